"""FaceModel: the project's 3DMM (or a user's model in the same .npz layout) as a port value."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import nodes.types  # noqa: F401  (registers the talking-face port types the face nodes use)
from graphcore.node import CachePolicy, InputFile, Node, NodeError, Out, RunContext
from graphcore.types import ObjectType, register_type

FACE_MODEL = register_type(ObjectType(
    "FaceModel", color="#c9a227",
    doc="A loaded linear 3DMM (nodes/face/model.py: mean, identity/expression bases, triangles, regions)."),
    "talkgraph")

MODEL_PATH_HELP = "3DMM .npz (empty: the bundled assets/face_model/talkgraph_3dmm_v1.npz)"
BUNDLED_MODEL = "assets/face_model/talkgraph_3dmm_v1.npz"  # nodes/face/model.py DEFAULT_MODEL_PATH

# The code that loads a face model, for nodes that take one (`code_dependencies`).
FACE_MODEL_CODE = ("nodes.face.model_nodes", "nodes.face.model", "nodes.face.camera")


def model_path_param() -> Any:
    return InputFile("", description=MODEL_PATH_HELP, extensions=(".npz",))


def face_model_files(model_path: str, connected: frozenset[str], port: str = "model") -> dict:
    """The bundled face model, when a node with a `model_path` parameter falls back to it."""
    from nodes.bundled import fallback

    return fallback("bundled face model", model_path, BUNDLED_MODEL, connected, port)


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
    code_dependencies = FACE_MODEL_CODE
    inputs: dict = {}
    outputs = {"model": Out("FaceModel")}

    class Params(BaseModel):
        model_path: str = model_path_param()

    def implicit_files(self, connected: frozenset[str]) -> dict:
        return face_model_files(self.params.model_path, connected, port=None)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        model = resolve_model(ctx, "FaceModel", None, self.params.model_path)
        ctx.log(f"face model {model.name} v{model.version}: {model.n_vertices} vertices, "
                f"{model.shape_basis.shape[-1]} identity / {model.expression_basis.shape[-1]} expression components")
        return {"model": model}


__all__ = ["FaceModel", "FACE_MODEL", "FACE_MODEL_CODE", "face_model_files", "resolve_model", "model_path_param"]
