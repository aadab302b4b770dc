"""Unit tests of the pure modules: no Keras, no TensorFlow, no fit, no server; seconds in all (`make unit`)."""
