"""Stage 3: fitting a fusion + head on cached features, and the trained model's predictive distribution."""
