"""Local plasticity rules: pure (init, update) pairs on LocalSignals."""
