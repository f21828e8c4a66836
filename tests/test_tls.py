"""TLS for real: a Dask scheduler and two workers that speak only TLS with mutual authentication, on
127.0.0.1, with a CA and certificates made here. `pipeline run` with the client's certificates in
`[engine.security]` gives the sync engine's answer; without them, or with a certificate the cluster does
not trust, it fails at once with one line naming the address."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pandas.testing import assert_frame_equal

from clusters import HOST, clean_env, dask_tls_cluster

PIPELINE = str(Path(sys.executable).parent / "pipeline")
USERSTAGES = Path(__file__).with_name("userstages.py")
RUN_TIMEOUT = 180

JOB = """
[source]
path = "{dataset}"
chunk_rows = 1000

[[stages]]
name = "long"
uses = "userstages:long_flights"
params = {{ min_distance = 800 }}

[[stages]]
name = "speed"
uses = "userstages:add_speed"

[[stages]]
name = "by_carrier"
uses = "stages.analyze:aggregate"
params.by = ["carrier", "month"]
params.aggs = {{ n = ["id", "size"], score = ["score", "sum"], worst = ["delay", "max"] }}

[sink]
path = "{out}"
mode = "overwrite"
"""
DASK = """
[engine]
name = "dask"
address = "{address}"
connect_timeout = 20
"""
SECURITY = """
[engine.security]
ca_file = "certs/{ca}.pem"        # relative to the config
cert_file = "certs/{client}.pem"
key_file = "certs/{client}.key"
"""


# --- a CA and certificates -----------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, encipher_only=False, decipher_only=False,
    )


def _builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(folder: Path, stem: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA; its certificate goes to `folder/<stem>.pem` (its key stays in memory)."""
    key = _key()
    cert = (
        _builder(f"pipeline test {stem}", _name(f"pipeline test {stem}"), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(folder: Path, stem: str, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], san: bool) -> None:
    """A certificate signed by `ca`, good for both ends of a connection, to `folder/<stem>.pem` and its key
    to `folder/<stem>.key`; with `san`, valid for 127.0.0.1 and localhost."""
    ca_cert, ca_key = ca
    key = _key()
    builder = (
        _builder(f"pipeline test {stem}", ca_cert.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san:
        names = [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{stem}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (folder / f"{stem}.key").chmod(0o600)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: `certs/` (the cluster's CA, the cluster's and a client's certificates, and a client
    certificate and a CA from elsewhere) and the user's stage module next to where configs go."""
    root = tmp_path_factory.mktemp("tls-project")
    certs = root / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ca")
    issue(certs, "cluster", ca, san=True)
    issue(certs, "client", ca, san=False)
    other = make_ca(certs, "other-ca")
    issue(certs, "other-client", other, san=False)
    shutil.copy(USERSTAGES, root / "userstages.py")
    return root


@pytest.fixture(scope="module")
def tls_scheduler(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    certs = project / "certs"
    files = {"ca_file": certs / "ca.pem", "cert_file": certs / "cluster.pem", "key_file": certs / "cluster.key"}
    with dask_tls_cluster(tmp_path_factory.mktemp("dask-tls-cluster"), files) as address:
        yield address


def run_job(project: Path, name: str, text: str, *flags: str) -> subprocess.CompletedProcess:
    """`pipeline run` on a config written into `project`, from another directory, without PYTHONPATH."""
    config = project / f"{name}.toml"
    config.write_text(text)
    elsewhere = project / f"{name}-cwd"
    elsewhere.mkdir()
    return subprocess.run(
        [PIPELINE, "run", str(config), *flags], cwd=elsewhere, env=clean_env(), capture_output=True, text=True,
        timeout=RUN_TIMEOUT,
    )


@pytest.fixture(scope="module")
def sync_answer(project: Path, dataset: Path) -> pd.DataFrame:
    out = project / "sync.parquet"
    result = run_job(project, "sync", JOB.format(dataset=dataset, out=out), "--quiet")
    assert result.returncode == 0, result.stderr
    return pd.read_parquet(out)


# --- the tests -----------------------------------------------------------------------------------------


def test_certificates_verify(project: Path) -> None:
    """The files are what the cluster gets: the cluster's certificate chains to the CA and names 127.0.0.1."""
    certs = project / "certs"
    ca = x509.load_pem_x509_certificate((certs / "ca.pem").read_bytes())
    cluster = x509.load_pem_x509_certificate((certs / "cluster.pem").read_bytes())
    cluster.verify_directly_issued_by(ca)
    names = cluster.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address(HOST) in names.get_values_for_type(x509.IPAddress)
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    other = x509.load_pem_x509_certificate((certs / "other-client.pem").read_bytes())
    with pytest.raises(ValueError):  # issued by another CA
        other.verify_directly_issued_by(ca)


def test_run_over_tls_gives_the_sync_answer(
    project: Path, dataset: Path, tls_scheduler: str, sync_answer: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "tls.parquet"
    text = JOB.format(dataset=dataset, out=out) + DASK.format(address=tls_scheduler) + SECURITY.format(
        ca="ca", client="client"
    )
    result = run_job(project, "tls-ok", text, "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert len(sync_answer) == 60  # 5 carriers x 12 months
    assert_frame_equal(pd.read_parquet(out), sync_answer, check_exact=False, rtol=1e-12)


REFUSED = {
    "no certificates": ("", "a tls:// scheduler needs this client's certificates"),
    "client certificate from another CA": (
        SECURITY.format(ca="ca", client="other-client"), "the scheduler refused the TLS handshake"
    ),
    "another CA trusted": (
        SECURITY.format(ca="other-ca", client="other-client"), "the scheduler's TLS certificate is not signed by"
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
def test_run_without_trusted_certificates_fails_in_one_line(
    case: str, quiet: bool, project: Path, dataset: Path, tls_scheduler: str, tmp_path: Path
) -> None:
    security, why = REFUSED[case]
    out = tmp_path / "refused.parquet"
    text = JOB.format(dataset=dataset, out=out) + DASK.format(address=tls_scheduler) + security
    name = f"refused-{list(REFUSED).index(case)}-{'quiet' if quiet else 'progress'}"
    result = run_job(project, name, text, *(["--quiet"] if quiet else []))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    if quiet:
        assert len(lines) == 1, result.stderr
    # without --quiet the progress bar's last state precedes it, on its own line
    error = lines[-1]
    assert error.startswith(f"error: cannot reach the Dask scheduler at {tls_scheduler}: "), result.stderr
    assert why in error, error
    assert result.stdout == ""
    assert not out.exists()


def test_plaintext_client_is_refused(project: Path, dataset: Path, tls_scheduler: str, tmp_path: Path) -> None:
    """The scheduler speaks only TLS: a tcp:// client with no certificates gets nowhere."""
    out = tmp_path / "plain.parquet"
    plain = tls_scheduler.replace("tls://", "tcp://")
    result = run_job(project, "plaintext", JOB.format(dataset=dataset, out=out) + DASK.format(address=plain), "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: cannot reach the Dask scheduler at {plain}: "), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not out.exists()
