"""MLflow runs -> ablation tables and figures."""
