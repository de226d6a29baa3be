"""The simulator's own retrieval index: real lines, but never a real person's contact details,
and never a line that is nothing but a placeholder."""

from __future__ import annotations

import re

from deescalwild.sim.corpus import simulator_retrieval


def test_the_default_index_is_pseudonymised_and_has_no_empty_placeholder_lines():
    replies = simulator_retrieval().index.replies
    assert len(replies) > 100
    text = "\n".join(replies)
    # the sample's facebook_dw0019 carries an e-mail address and a phone number to mask
    assert "@example.com" not in text and "[EMAIL]" in text and "[PHONE]" in text
    assert "Oh. Okay. Then, uh, it's Civilian A. Civilian A." in replies  # words around a name
    only = re.compile(r"^(?:\s|[.,!?]|\[[A-Z ]+\]|Civilian [A-Z]{1,2})*$")
    assert not [r for r in replies if only.match(r)]
