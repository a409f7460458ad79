"""Stage 2: the encoder, its optional stage-1 training, and the cached features every model trains on."""
