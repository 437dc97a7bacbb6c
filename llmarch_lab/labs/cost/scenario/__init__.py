"""Cost v2: the seed's second scenario (cut LLM cost by half at <= 2% quality loss) as a study."""
