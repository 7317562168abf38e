"""Runs inside the MediaPipe client environment (.venv-client), never in the main .venv.

Why a separate process: mediapipe pulls opencv-contrib-python, which clashes with the main
environment's opencv-python-headless. The main code calls this script by subprocess
(toolchain/handoff/client.py) with a JSON request file and reads one JSON reply from stdout.

It imports only the standard library, numpy, flatbuffers and mediapipe. Commands:
- write-metadata: add TFLite metadata (+ associated files) to .tflite files
- read-metadata:  read it back (the metadata flatbuffer as a dict, the associated files' text)
- segment:        run MediaPipe Tasks ImageSegmenter on .npy images, save its masks as .npy
- version:        the mediapipe version

How metadata is written: the tensor metadata comes from MediaPipe's own metadata writer classes
(`metadata_writers.metadata_info`: GeneralMd, InputImageTensorMd, SegmentationMaskMd, LabelFileMd,
TensorMd) and the generated schema modules the package ships (metadata_schema_py_generated,
image_segmenter_metadata_schema_py_generated, schema_py_generated). The last steps of
`metadata_writer.populate` (MetadataPopulator) cannot be imported from mediapipe 1.2.3: its module
imports `_pywrap_metadata_version`, which only 0.10.x wheels ship. Those steps are therefore done
here with the same schema object API: pack ModelMetadataT, store it as the model buffer named
"TFLITE_METADATA", append the associated files as a zip (entries with a fixed timestamp so the same
inputs give the same bytes), and set min_parser_version from the schema members used (the rule of
mediapipe/tasks/cc/metadata/metadata_version.cc).
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import flatbuffers
import numpy as np

METADATA_NAME = "TFLITE_METADATA"
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"  # mediapipe image_segmenter.py _METADATA_NAME
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _fb():
    # MediaPipe: installed only in the client environment (.venv-client) this worker runs in
    from mediapipe.tasks.metadata import image_segmenter_metadata_schema_py_generated as seg_fb
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md_fb
    from mediapipe.tasks.metadata import schema_py_generated as schema_fb

    return md_fb, seg_fb, schema_fb


# ---------------------------------------------------------------- write


def _min_parser_version(md) -> str:
    """metadata_version.cc: the newest schema member used decides the minimum parser version."""
    md_fb, _, _ = _fb()
    version = (1, 0, 0)
    files = list(md.associatedFiles or [])
    for sg in md.subgraphMetadata or []:
        if sg.customMetadata:
            version = max(version, (1, 5, 0))
        if sg.inputProcessUnits or sg.outputProcessUnits:
            version = max(version, (1, 1, 0))
        if sg.inputTensorGroups or sg.outputTensorGroups:
            version = max(version, (1, 2, 0))
        files += list(sg.associatedFiles or [])
        for t in list(sg.inputTensorMetadata or []) + list(sg.outputTensorMetadata or []):
            files += list(t.associatedFiles or [])
    for f in files:
        if f.type == md_fb.AssociatedFileType.VOCABULARY:
            version = max(version, (1, 0, 1))
        if f.version:
            version = max(version, (1, 4, 1))
    return ".".join(map(str, version))


def _tensor_names(model_buf: bytes):
    # MediaPipe: installed only in the client environment (.venv-client) this worker runs in
    from mediapipe.tasks.python.metadata.metadata_writers import writer_utils

    return writer_utils.get_input_tensor_names(model_buf), writer_utils.get_output_tensor_names(model_buf)


def _tensor_types(model_buf: bytes):
    # MediaPipe: installed only in the client environment (.venv-client) this worker runs in
    from mediapipe.tasks.python.metadata.metadata_writers import writer_utils

    sg = writer_utils.get_subgraph(model_buf)
    return [sg.Tensors(sg.Inputs(i)).Type() for i in range(sg.InputsLength())]


def build_metadata(model_buf: bytes, record: dict):
    """ModelMetadataT for one file from its handoff record (toolchain/handoff/metadata.py)."""
    # MediaPipe: installed only in the client environment (.venv-client) this worker runs in
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info as mi

    md_fb, seg_fb, _ = _fb()
    in_names, out_names = _tensor_names(model_buf)
    inp = record["input"]
    color = getattr(md_fb.ColorSpaceType, inp.get("color_space", "RGB"))
    input_md = mi.InputImageTensorMd(
        name=inp["name"],
        description=inp["description"],
        norm_mean=list(inp["norm_mean"]),
        norm_std=list(inp["norm_std"]),
        color_space_type=color,
        tensor_type=_tensor_types(model_buf)[0],
    )
    if len(record["outputs"]) != len(out_names):
        raise ValueError(f"record has {len(record['outputs'])} outputs, the model {len(out_names)}")
    specs = list(record["outputs"])
    if all(s.get("tensor_name") in out_names for s in specs):  # pair by tensor name, in the file's order
        specs.sort(key=lambda s: out_names.index(s["tensor_name"]))
    outputs = []
    for spec in specs:
        label_files = []
        if spec.get("labels_file"):
            ftype = getattr(md_fb.AssociatedFileType, spec.get("labels_type", "TENSOR_AXIS_LABELS"))
            if ftype == md_fb.AssociatedFileType.TENSOR_AXIS_LABELS:
                label_files = [mi.LabelFileMd(file_path=spec["labels_file"])]
            else:
                label_files = [mi.AssociatedFileMd(file_path=spec["labels_file"], file_type=ftype)]
        if spec.get("kind") == "segmentation_mask":
            out_md = mi.SegmentationMaskMd(
                name=spec["name"], description=spec["description"], label_files=label_files or None
            ).create_metadata()
        else:
            out_md = mi.TensorMd(
                name=spec["name"], description=spec["description"], associated_files=label_files or None
            ).create_metadata()
        if spec.get("range"):
            out_md.stats = md_fb.StatsT()
            out_md.stats.min, out_md.stats.max = [float(spec["range"][0])], [float(spec["range"][1])]
        outputs.append(out_md)
    sg = md_fb.SubGraphMetadataT()
    sg.inputTensorMetadata = [input_md.create_metadata()]
    sg.outputTensorMetadata = outputs
    if record.get("segmenter_activation"):
        opts = seg_fb.ImageSegmenterOptionsT()
        opts.activation = getattr(seg_fb.Activation, record["segmenter_activation"])
        b = flatbuffers.Builder(0)
        b.Finish(opts.Pack(b), b"V001")  # image_segmenter.py ImageSegmenterOptionsMd
        custom = md_fb.CustomMetadataT()
        custom.name, custom.data = SEGMENTER_METADATA_NAME, b.Output()
        sg.customMetadata = [custom]
    general = mi.GeneralMd(
        name=record["name"],
        version=record["version"],
        description=record["description"],
        author=record["author"],
        licenses=record["license"],
    ).create_metadata()
    general.subgraphMetadata = [sg]
    general.minParserVersion = _min_parser_version(general)
    return general


def populate(model_buf: bytes, md, associated: dict[str, bytes]) -> bytes:
    """Model bytes with the metadata buffer and associated files (what MetadataPopulator.populate does)."""
    md_fb, _, schema_fb = _fb()
    b = flatbuffers.Builder(0)
    b.Finish(md.Pack(b), b"M001")  # MetadataPopulator.METADATA_FILE_IDENTIFIER
    metadata_buf = b.Output()
    model = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(bytearray(_strip_zip(model_buf)), 0))
    buf = schema_fb.BufferT()
    buf.data = metadata_buf
    model.buffers = model.buffers or []
    model.metadata = model.metadata or []
    for meta in model.metadata:
        if meta.name.decode() == METADATA_NAME:
            model.buffers[meta.buffer] = buf
            break
    else:
        model.buffers.append(buf)
        entry = schema_fb.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), b"TFL3")
    out = bytes(b.Output())
    if associated:
        stream = io.BytesIO()
        stream.write(out)
        with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as zf:
            for name in sorted(associated):
                info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
                info.external_attr = 0o644 << 16
                zf.writestr(info, associated[name])
        out = stream.getvalue()
    return out


def _strip_zip(model_buf: bytes) -> bytes:
    """A model that already carries associated files: the flatbuffer part only."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_buf)) as zf:
            first = min(i.header_offset for i in zf.infolist()) if zf.infolist() else len(model_buf)
        return model_buf[:first]
    except zipfile.BadZipFile:
        return model_buf


def cmd_write_metadata(req: dict) -> dict:
    done = []
    for job in req["jobs"]:
        src = Path(job["model"]).read_bytes()
        md = build_metadata(src, job["record"])
        associated = {Path(p).name: Path(p).read_bytes() for p in job.get("associated", [])}
        Path(job["out"]).write_bytes(populate(src, md, associated))
        done.append(job["out"])
    return {"written": done}


# ---------------------------------------------------------------- read


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _to_plain(obj, key: str = ""):
    """Object-API value -> JSON-friendly value, enums by name, bytes as text when they are text."""
    md_fb, _, _ = _fb()
    enums = {
        "colorSpace": md_fb.ColorSpaceType,
        "type": md_fb.AssociatedFileType,
        "contentPropertiesType": md_fb.ContentProperties,
        "optionsType": md_fb.ProcessUnitOptions,
    }
    if isinstance(obj, (bytes, bytearray)):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return {"bytes": len(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, int) and key in enums:
        return _enum_names(enums[key]).get(obj, obj)
    if hasattr(obj, "__dict__"):
        return {k: _to_plain(v, k) for k, v in vars(obj).items() if v is not None}
    return obj


def read_metadata(model_buf: bytes) -> dict:
    md_fb, seg_fb, schema_fb = _fb()
    model = schema_fb.Model.GetRootAsModel(bytearray(model_buf), 0)
    found = None
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name().decode() == METADATA_NAME:
            found = model.Buffers(m.Buffer()).DataAsNumpy().tobytes()
    files = {}
    try:
        with zipfile.ZipFile(io.BytesIO(model_buf)) as zf:
            for info in zf.infolist():
                data = zf.read(info)
                files[info.filename] = data.decode("utf-8", errors="replace")
    except zipfile.BadZipFile:
        pass
    if found is None:
        return {"metadata": None, "associated_files": files}
    if not md_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(found, 0):
        return {
            "metadata": None,
            "error": "TFLITE_METADATA buffer lacks the M001 identifier",
            "associated_files": files,
        }
    md = md_fb.ModelMetadataT.InitFromObj(md_fb.ModelMetadata.GetRootAsModelMetadata(found, 0))
    plain = _to_plain(md)
    for sg_plain, sg in zip(plain.get("subgraphMetadata", []), md.subgraphMetadata or []):
        for c_plain, c in zip(sg_plain.get("customMetadata", []), sg.customMetadata or []):
            if c.name and c.name.decode() == SEGMENTER_METADATA_NAME:
                data = bytes(bytearray(c.data))
                opts = seg_fb.ImageSegmenterOptions.GetRootAs(data, 0)
                c_plain["data"] = {"activation": _enum_names(seg_fb.Activation).get(opts.Activation())}
    return {"metadata": plain, "associated_files": files}


def cmd_read_metadata(req: dict) -> dict:
    out = {}
    for p in req["models"]:
        try:
            out[p] = read_metadata(Path(p).read_bytes())
        except Exception as exc:  # noqa: BLE001 - one damaged file is that file's verdict, not the whole reply
            out[p] = {
                "metadata": None,
                "associated_files": {},
                "error": f"cannot read the file's flatbuffer: {type(exc).__name__}: {str(exc)[:160]}",
            }
    return out


# ---------------------------------------------------------------- run


def cmd_segment(req: dict) -> dict:
    """ImageSegmenter (IMAGE mode) on each .npy (uint8 H x W x 3 RGB): confidence masks stacked
    [H, W, C] float32 and the category mask [H, W] uint8, saved beside the request."""
    # MediaPipe: installed only in the client environment (.venv-client) this worker runs in
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    out_dir = Path(req["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=req["model"]), output_confidence_masks=True, output_category_mask=True
    )
    try:
        segmenter = vision.ImageSegmenter.create_from_options(options)
    except Exception as exc:  # MediaPipe raises plain RuntimeError/ValueError with its status text
        return {"loaded": False, "error": f"{type(exc).__name__}: {exc}"}
    results = []
    with segmenter:
        labels = list(segmenter.labels or [])
        for i, path in enumerate(req["images"]):
            rgb = np.ascontiguousarray(np.load(path))
            res = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            conf = [np.asarray(m.numpy_view(), np.float32).reshape(rgb.shape[:2]) for m in (res.confidence_masks or [])]
            cat = (
                np.asarray(res.category_mask.numpy_view()).reshape(rgb.shape[:2])
                if res.category_mask is not None
                else None
            )
            rec = {"image": path, "confidence_masks": len(conf)}
            if conf:
                p = out_dir / f"{i}.confidence.npy"
                np.save(p, np.stack(conf, -1))
                rec["confidence"] = str(p)
            if cat is not None:
                p = out_dir / f"{i}.category.npy"
                np.save(p, np.asarray(cat, np.uint8))
                rec["category"] = str(p)
            results.append(rec)
    return {"loaded": True, "labels": labels, "results": results}


def cmd_version(req: dict) -> dict:
    return {"mediapipe": version("mediapipe"), "python": sys.version.split()[0]}


COMMANDS = {
    "write-metadata": cmd_write_metadata,
    "read-metadata": cmd_read_metadata,
    "segment": cmd_segment,
    "version": cmd_version,
}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in COMMANDS:
        print(json.dumps({"error": f"usage: _client_worker.py {{{','.join(COMMANDS)}}} REQUEST.json"}))
        return 2
    req = json.loads(Path(argv[1]).read_text())
    reply = COMMANDS[argv[0]](req)
    sys.stdout.write("\n@@REPLY@@" + json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
