"""Figures the notebooks show, kept here so that no notebook carries plotting logic of its own."""

from etlib.viz import audio as audio  # notebook 05: viz.audio.*
from etlib.viz import emotion as emotion  # notebooks 03-04: viz.emotion.*
from etlib.viz import evaluation as evaluation  # notebook 10: viz.evaluation.*
from etlib.viz import real_footage as real_footage  # benchmarks/real_footage.py: contact sheet
from etlib.viz.core import plot_presets, plot_subject_signals, plot_va_points, show_subject_frames, show_table
from etlib.viz.splatting import demo_scene, plot_fit, show_render_outputs
from etlib.viz.training import (
    plot_emotion_visibility,
    plot_lip_motion,
    plot_losses,
    show_attention_maps,
    show_composition,
    show_emotion_grid,
    show_layer_renders,
    show_normals,
)

__all__ = [
    "demo_scene",
    "plot_emotion_visibility",
    "plot_fit",
    "plot_lip_motion",
    "show_render_outputs",
    "plot_losses",
    "plot_presets",
    "plot_subject_signals",
    "plot_va_points",
    "show_attention_maps",
    "show_composition",
    "show_emotion_grid",
    "show_layer_renders",
    "show_normals",
    "show_subject_frames",
    "show_table",
]
