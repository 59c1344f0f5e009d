"""graphcore: a typed-node workflow engine with a content-addressed Zarr cache.

The engine knows nothing about faces or audio: node libraries register their nodes and port
types through the registry (entry-point group `graphrun.nodes`).
"""
from .node import (
    CachePolicy,
    FileSource,
    In,
    InputFile,
    InputPath,
    Node,
    NodeError,
    NoParams,
    Out,
    OutputFile,
    OutputFolder,
    OutputPath,
    Port,
    RunCancelled,
    RunContext,
)
from .types import (
    TYPES,
    ArrayType,
    CheckpointBlob,
    ObjectType,
    PortType,
    RecordType,
    TypeValidationError,
    register_type,
)

__all__ = [
    "CachePolicy", "FileSource", "In", "InputFile", "InputPath", "Node", "NodeError", "NoParams", "Out", "OutputFile",
    "OutputFolder", "OutputPath", "Port", "RunCancelled", "RunContext",
    "ArrayType", "CheckpointBlob", "PortType", "RecordType", "ObjectType", "TypeValidationError", "TYPES", "register_type",
]
