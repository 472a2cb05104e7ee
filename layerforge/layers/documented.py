"""The layer set documented for Keras 1.2, by family: every name is a valid `type:`."""

DOCUMENTED_LAYERS: dict[str, list[str]] = {
    "core": ["Dense", "Activation", "Dropout", "Flatten", "Reshape", "Permute", "RepeatVector", "Merge", "Lambda",
             "ActivityRegularization", "Masking", "Highway", "MaxoutDense"],
    "convolution": ["Convolution1D", "Convolution2D", "Convolution3D", "AtrousConvolution1D", "AtrousConvolution2D",
                    "SeparableConvolution2D", "Deconvolution2D"],
    "reshaping": ["Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
                  "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"],
    "pooling": ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
                "GlobalAveragePooling2D"],
    "locally_connected": ["LocallyConnected1D", "LocallyConnected2D"],
    "recurrent": ["SimpleRNN", "GRU", "LSTM"],
    "embedding": ["Embedding"],
    "advanced_activations": ["LeakyReLU", "PReLU", "ELU", "ParametricSoftplus", "ThresholdedReLU", "SReLU"],
    "normalization": ["BatchNormalization"],
    "noise": ["GaussianNoise", "GaussianDropout"],
    "wrappers": ["TimeDistributed", "Bidirectional"],
}

ALL_DOCUMENTED = [name for names in DOCUMENTED_LAYERS.values() for name in names]
