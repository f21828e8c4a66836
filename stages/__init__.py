"""The built-in stage library: plain functions users can read and copy.

Every stage takes one chunk (a slice of the table's rows) and returns a new
DataFrame, so none of them may assume it sees the whole table. Reference a
stage from a config as ``uses = "stages.clean:drop_nulls"``.
"""
