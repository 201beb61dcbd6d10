"""The render node worker: registers with the dispatcher and runs its commands under watchers."""
