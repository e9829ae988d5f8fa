"""A minimal stand-in for PaddleClas, for integration tests (not PaddleClas code)."""
