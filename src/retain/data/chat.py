"""Chat templates for causal models: each prompt becomes one user turn rendered by the
tokenizer's ``apply_chat_template`` (with the generation prompt), so an instruction-tuned model
is trained and evaluated in the format it was tuned on."""

from __future__ import annotations

from typing import Any, Optional

from retain.errors import ConfigError

#: ``model.chat_template`` value that means "the tokenizer's own template".
FROM_TOKENIZER = "tokenizer"


def render_chat(tokenizer: Any, prompt: str) -> str:
    """The prompt as a user turn followed by the assistant's generation prompt (text, not ids)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def configure_chat_template(tokenizer: Any, setting: Optional[str], kind: str, key: str = "model.chat_template") -> bool:
    """Install ``setting`` on ``tokenizer`` (``tokenizer``: keep its own; other text: a Jinja
    template) and check that it renders; False when ``setting`` is None (plain prompts)."""
    if setting is None:
        return False
    if kind != "causal":
        raise ConfigError(f"{key}: chat templates are for causal models (this model is {kind})")
    if setting == FROM_TOKENIZER:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(f"{key}: the tokenizer has no chat template of its own (give one as text, or null)")
    else:
        tokenizer.chat_template = setting
    try:
        rendered = render_chat(tokenizer, "probe")
    except Exception as exc:  # noqa: BLE001 - any template failure is the user's template to fix
        raise ConfigError(f"{key}: the chat template does not render ({type(exc).__name__}: {exc})") from None
    if "probe" not in rendered:
        raise ConfigError(f"{key}: the chat template drops the message content (it never prints message['content'])")
    return True


__all__ = ["FROM_TOKENIZER", "configure_chat_template", "render_chat"]
