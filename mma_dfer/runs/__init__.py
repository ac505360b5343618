"""What a run leaves on disk, and the rules for reusing it: its identity and fingerprint
(``identity``, no torch), the run folder's check (``folder``), reading its checkpoints
(``checkpoints``) and ``result.json`` (``results``)."""
