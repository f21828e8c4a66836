"""Chunked input and atomically committed output: a Source lists and reads chunks, a Sink writes parts
to staging and commits them all at once."""

from pipeline.io.manifest import Manifest, Receipt
from pipeline.io.memory import MemorySink, MemorySource
from pipeline.io.sink import DirectorySink, FileSink, Sink, sink_for
from pipeline.io.object_sink import ObjectDirectorySink, ObjectFileSink
from pipeline.io.chunk import Chunk, Piece
from pipeline.io.source import FileSource, Source

__all__ = [
    "Chunk",
    "DirectorySink",
    "FileSink",
    "FileSource",
    "Manifest",
    "MemorySink",
    "MemorySource",
    "ObjectDirectorySink",
    "ObjectFileSink",
    "Piece",
    "Receipt",
    "Sink",
    "Source",
    "sink_for",
]
