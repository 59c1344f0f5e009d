"""The node editor (`graphrun ui`): a Gradio app around a litegraph canvas. Imports graphcore only."""
