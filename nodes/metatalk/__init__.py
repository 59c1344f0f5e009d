"""MetaTalk (Zhang et al. 2022): A2E (§2.3, Table 1) and the NeuralFaceRenderer (§2.4)."""
