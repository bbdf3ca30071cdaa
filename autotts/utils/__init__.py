"""Small shared utilities: atomic file writes and small readers, and where autotts's own
files (controller programs, agent prompts) are found.
"""
