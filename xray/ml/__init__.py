"""Model code (Keras/TensorFlow): the model, its training and preprocessing, the input
guard, Grad-CAM, batch scoring and the service's request handling."""
