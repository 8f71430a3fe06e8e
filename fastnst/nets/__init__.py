"""The networks: the image transformation network, its padding geometry, VGG-19 features, the
perceptual losses computed on them, and the model file that stores a trained network."""
