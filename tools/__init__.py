"""Offline tools: builders of the bundled assets (the face model, the sample inputs), the checkpoint
manifest writer, docs figures. They run in a source checkout (`python -m tools.NAME`), are not part
of the installed package, and may import anything; what they make is checked by the tests."""
