"""From videos to transcripts: sources, audio, transcription, diarization, relevance, export.

Every stage is a function of one video (`tasks.StageTask` -> `tasks.StageOutcome`); the
manifest (SQLite) records what each stage did; the runner schedules stages on a local process
pool or on Ray. See docs/acquisition.md.
"""
