"""Fuzz target: a PyTorch file (``model.pt``), read with ``weights_only=True``.

The first byte chooses how the rest becomes the file (its value modulo 3):

* 0: the rest is the file as it stands (a torch.save zip, a legacy pickle, anything);
* 1: the rest is ``data.pkl``, then the records ``data/0``, ``data/1``, ... separated by
  :data:`SEP`, packed into a well-formed torch.save zip (stored records, right CRCs), so
  mutations reach the unpickler and the state-dict walk instead of failing zip checks;
* 2: as 1, with the records deflate-compressed (bilin's "meta" route).

Then ``bilin.info``, ``bilin.load`` and ``eig``, as for safetensors. Besides bilin, the
functions of :data:`TORCH_MODULES` (torch's weights-only unpickler and loader) are
instrumented, so the fuzzer is guided through the unpickler's opcodes too.

    python tests/robustness/fuzz/fuzz_torch_zip.py WORK_CORPUS \
        tests/robustness/fuzz/corpus/torch_zip -timeout=20 -rss_limit_mb=3072
"""

from __future__ import annotations

import io
import zipfile

import fuzz_common as common

SEP = b"\n--record--\n"


def pack(pickle_bytes: bytes, records: list[bytes], compressed: bool = False) -> bytes:
    """A torch.save-style zip (``archive/``) holding ``data.pkl`` and ``data/<i>``."""
    how = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", how) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/.format_version", b"1")
        zf.writestr("archive/.storage_alignment", b"64")
        zf.writestr("archive/byteorder", b"little")
        for i, rec in enumerate(records):
            zf.writestr(f"archive/data/{i}", rec)
        zf.writestr("archive/version", b"3\n")
    return buf.getvalue()


def unpack(raw: bytes) -> bytes:
    """The mode-1 fuzz input holding a torch.save file's pickle and records (for seeds)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = zf.namelist()
        pkl = next(n for n in names if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        records = {}
        for n in names:
            rest = n[len(prefix):]
            if rest.startswith("data/") and rest[5:].isdigit():
                records[int(rest[5:])] = zf.read(n)
        body = [zf.read(pkl)] + [records.get(i, b"") for i in range(max(records, default=-1) + 1)]
    return b"\x01" + SEP.join(body)


def file_bytes(data: bytes) -> bytes:
    mode = data[0] % 3 if data else 0
    rest = data[1:]
    if mode == 0:
        return rest
    parts = rest.split(SEP)
    return pack(parts[0], parts[1:64], compressed=mode == 2)


def one_input(data: bytes) -> None:
    case = common.fresh()
    path = case / "model.pt"
    path.write_bytes(file_bytes(data))
    with common.strict_warnings():
        common.exercise_path(path)


# torch's own reading, instrumented too (bilin's frames alone give the fuzzer little to go
# on past the first torch call): the weights-only unpickler, torch.load, the rebuilders.
TORCH_MODULES = ("torch._weights_only_unpickler", "torch.serialization", "torch._utils")

if __name__ == "__main__":
    common.main(one_input, also=TORCH_MODULES)
