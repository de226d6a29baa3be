"""Anything that can speak as the civilian: one protocol (`base.Responder`), many backends
picked by a spec string (`registry.load_responder("retrieval")`)."""
