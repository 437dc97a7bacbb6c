"""Cost lab: routing between a small and a larger model, semantic caching, a cost model and the plan."""
