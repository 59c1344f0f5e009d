"""FaceModel: the project's 3DMM (or a user's model in the same .npz layout) as a port value."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

import nodes.types  # noqa: F401  (registers the talking-face port types the face nodes use)
from graphcore.node import CachePolicy, FileSource, In, InputFile, Node, NodeError, Out, Port, RunContext
from graphcore.types import ObjectType, register_type
from nodes.face.model import DEFAULT_MODEL_PATH

FACE_MODEL = register_type(ObjectType(
    "FaceModel", color="#c9a227",
    doc="A loaded linear 3DMM (nodes/face/model.py: mean, identity/expression bases, triangles, regions)."),
    "talkgraph")

FACE_MODEL_FILE = DEFAULT_MODEL_PATH  # assets/face_model/talkgraph_3dmm_v1.npz
MODEL_PATH_HELP = f"3DMM .npz (empty: the bundled assets/face_model/{FACE_MODEL_FILE.name})"
FACE_MODEL_LABEL = "bundled face model"  # how the bundled file is named in cache keys and messages



def FaceModelInput(doc: str = "a loaded face model (FaceModel); overrides model_path") -> Port:
    """The `model` input of a node that uses the 3DMM: the FaceModel port, the `model_path`
    parameter used when it is not connected, and the bundled model when that is empty too."""
    return In("FaceModel", doc, file=FileSource(param="model_path", fallback=FACE_MODEL_FILE, description=MODEL_PATH_HELP,
                                                extensions=(".npz",), label=FACE_MODEL_LABEL))


def model_path_param() -> Any:
    """A `model_path` parameter for nodes without a `model` input (empty: the bundled model)."""
    return InputFile("", description=MODEL_PATH_HELP, extensions=(".npz",), fallback=FACE_MODEL_FILE, label=FACE_MODEL_LABEL)


def bundled_face_model() -> dict[str, Path]:
    """The implicit file of a node that always builds with the bundled model (no parameter)."""
    return {FACE_MODEL_LABEL: FACE_MODEL_FILE}


def resolve_model(ctx: RunContext, node: str, model: Any = None, model_path: str = ""):
    """The connected FaceModel, else the file named by `model_path`, else the bundled model."""
    from nodes.face.model import load_face_model

    if model is not None:
        return model
    path = ctx.resolve_path(model_path) if model_path else None
    try:
        return load_face_model(path)
    except (OSError, KeyError, ValueError) as e:
        raise NodeError(f"{node}: cannot load the face model {path or '(bundled)'}: {e}") from None


class FaceModel(Node):
    """Load a 3DMM once and hand it to Fit3DMM / DenseFlowBuilder / renderers.

    Optional: those nodes load the same model themselves from their `model_path` parameter.
    The bundled model is the project's own (docs/nodes/face-model.md); a user-supplied BFM,
    FLAME or ICT-FaceKit model converted to the same .npz layout works the same way.
    """

    category = "face"
    cache = CachePolicy.TRANSIENT
    inputs: dict = {}
    outputs = {"model": Out("FaceModel")}

    class Params(BaseModel):
        model_path: str = model_path_param()

    def run(self, ctx: RunContext) -> dict[str, Any]:
        model = resolve_model(ctx, "FaceModel", None, self.params.model_path)
        ctx.log(f"face model {model.name} v{model.version}: {model.n_vertices} vertices, "
                f"{model.shape_basis.shape[-1]} identity / {model.expression_basis.shape[-1]} expression components")
        return {"model": model}


__all__ = ["FaceModel", "FACE_MODEL", "FACE_MODEL_FILE", "FaceModelInput", "bundled_face_model", "resolve_model",
           "model_path_param"]
