"""The cache tiers: this worker's entries, the generation words shared by workers, Redis.

``local`` (entries, bounded, with the packed cold tier), ``generations`` (change words in shared
memory), ``redis_tier`` (the Redis tier shared by workers and nodes), ``store_reads`` (store reads
batched per loop turn), ``tiers`` (local → Redis → store, with coalescing, prefetch and serve-stale).
"""
