"""rareflow's pipelines (Prefect flows) and its command line."""
