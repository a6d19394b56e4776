"""Saving, loading and exporting converted models, and building models from their source."""

from .export import ExportReport, export_onnx
from .save import load, save
from .sources import build_model, load_checkpoint

__all__ = ["save", "load", "export_onnx", "ExportReport", "build_model", "load_checkpoint"]
