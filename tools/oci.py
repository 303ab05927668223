#!/usr/bin/env python3
"""Package llm_gateway.wasm as an OCI image layout that Istio's Wasm fetcher accepts.

    python3 tools/oci.py [--wasm PATH] [--out DIR] [--tag TAG] [--variant compat|oci]

Writes an OCI image layout directory (``oci-layout``, ``index.json``,
``blobs/sha256/...``) and prints the manifest digest (``sha256:...``) on
stdout. Python standard library only; no Docker engine. The output is a pure
function of the module's bytes and the options: running it twice gives the
same digests (fixed tar header fields, gzip header without name or mtime,
sorted JSON keys). A registry that accepts OCI manifests stores the
manifest unchanged, so the digest printed here is the one it shows after the
layout is pushed (``skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG``,
``oras cp --from-oci-layout DIR:TAG REGISTRY/REPO:TAG`` or
``crane push DIR REGISTRY/REPO:TAG``).

Variants, as defined by the Wasm image spec (github.com/solo-io/wasm, spec/)
and read by Istio's ``pkg/wasm/imagefetcher.go``, which tries them in this
order:

* ``compat`` (default): one ``application/vnd.oci.image.layer.v1.tar+gzip``
  layer holding ``plugin.wasm`` (and ``runtime-config.json``), a regular
  ``application/vnd.oci.image.config.v1+json`` config, and the manifest
  annotation ``module.wasm.image/variant: compat``. Every Istio version with
  a Wasm image fetcher accepts it, every registry stores it, and container
  tooling can unpack it (``crane export``, Kubernetes image volumes).
* ``oci``: the custom-media-type artifact. Istio requires exactly two layers
  here: the raw module as ``application/vnd.module.wasm.content.layer.v1+wasm``
  and a ``application/vnd.module.wasm.config.v1+json`` layer (its tests build
  it that way); a single-layer ``+wasm`` image is refused with "number of
  layers must be 2". Some registries refuse unknown media types.

Gzip output can differ between zlib builds, so the compat digest is stable
for one machine image, not across every zlib; the ``oci`` variant has no
compressed bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WASM = ROOT / "target" / "wasm32-wasip1" / "release" / "llm_gateway.wasm"
DEFAULT_OUT = ROOT / "target" / "oci"

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"

# Root contexts the module registers (filter and counter service), for the
# spec's runtime config; informational only.
ROOT_IDS = ["llm_gateway", "llm_gateway_counter"]


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type: str, data: bytes, annotations: dict | None = None) -> dict:
    d = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def runtime_config() -> bytes:
    return canonical_json({"type": "envoy_proxy", "config": {"root_ids": ROOT_IDS}})


def deterministic_tar(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def deterministic_gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    # filename="" and mtime=0: no name and no timestamp in the gzip header.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, variant: str, tag: str) -> tuple[dict[str, bytes], dict, bytes]:
    """Blobs by digest, the index, and the manifest bytes."""
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> None:
        blobs[sha256(data)] = data

    if variant == "compat":
        tar = deterministic_tar([("plugin.wasm", wasm), ("runtime-config.json", runtime_config())])
        layer = deterministic_gzip(tar)
        config = canonical_json({
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        })
        add(layer)
        add(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(IMAGE_CONFIG, config),
            "layers": [descriptor(TAR_GZIP_LAYER, layer)],
            "annotations": {"module.wasm.image/variant": "compat"},
        }
    elif variant == "oci":
        config = runtime_config()
        add(wasm)
        add(config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor(WASM_CONFIG, config),
            "layers": [
                descriptor(WASM_CONFIG, config, {"org.opencontainers.image.title": "runtime-config.json"}),
                descriptor(WASM_LAYER, wasm, {"org.opencontainers.image.title": "plugin.wasm"}),
            ],
        }
    else:
        raise ValueError(f"unknown variant {variant!r}")
    manifest_bytes = canonical_json(manifest)
    add(manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [descriptor(MANIFEST, manifest_bytes, {"org.opencontainers.image.ref.name": tag})],
    }
    return blobs, index, manifest_bytes


def write_layout(out: Path, blobs: dict[str, bytes], index: dict) -> None:
    blob_dir = out / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    # A fresh layout: blobs of an earlier build would be unreferenced garbage.
    for old in blob_dir.iterdir():
        if f"sha256:{old.name}" not in blobs:
            old.unlink()
    for digest, data in sorted(blobs.items()):
        path = blob_dir / digest.split(":", 1)[1]
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(canonical_json(index))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help="module to package (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="layout directory (default: %(default)s)")
    p.add_argument("--tag", default="latest", help="org.opencontainers.image.ref.name (default: %(default)s)")
    p.add_argument("--variant", choices=["compat", "oci"], default="compat")
    args = p.parse_args(argv)
    try:
        wasm = args.wasm.read_bytes()
    except OSError as e:
        print(f"error: {args.wasm}: {e.strerror}; build it first (make build)", file=sys.stderr)
        return 1
    if wasm[:4] != b"\0asm":
        print(f"error: {args.wasm} is not a WebAssembly module", file=sys.stderr)
        return 1
    blobs, index, manifest = build(wasm, args.variant, args.tag)
    write_layout(args.out, blobs, index)
    print(
        f"{args.out}: OCI layout ({args.variant} variant, tag {args.tag}), module {sha256(wasm)} "
        f"({len(wasm)} bytes)",
        file=sys.stderr,
    )
    print(sha256(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
