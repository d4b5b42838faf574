"""Request and response bodies of ``tunekit serve`` (pydantic models; FastAPI validates requests with them).

The generation bodies follow the OpenAI API's field names (``/v1/chat/completions``, ``/v1/completions``) so
its official clients work unchanged; fields tunekit does not implement (``n`` above 1, ``logprobs``, tools)
are refused with a 400 rather than ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_NEW_TOKENS = 4096
"""The most tokens one request may ask for (``max_tokens``)."""
MAX_PREDICT_INPUTS = 256
"""The most inputs one ``/v1/predict`` request may carry."""


class Sampling(BaseModel):
    """The generation settings a request may give; unset ones keep the run's task options."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Ignored: the server serves one run.")
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS, description="Alias of max_tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="Nucleus sampling threshold.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings that end the answer (not included).")
    seed: int | None = Field(None, ge=0, description="Seed for sampling; same seed and settings, same answer.")
    stream: bool = Field(False, description="Send the answer as server-sent events, a piece at a time.")
    n: int = Field(1, ge=1, le=1, description="Answers per request: tunekit generates one.")

    def stops(self) -> list[str]:
        values = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in values if s]

    def new_tokens(self) -> int | None:
        return self.max_tokens or self.max_completion_tokens


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(Sampling):
    messages: list[Message] = Field(..., min_length=1, description="The conversation so far; the last turn is the user's.")


class CompletionRequest(Sampling):
    prompt: str | list[str] = Field(..., description="One prompt (a list must hold exactly one).")

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else (self.prompt[0] if len(self.prompt) == 1 else "")


class PredictRequest(BaseModel):
    """``{"inputs": [...]}``: texts, text pairs ``[text, pair]`` / (question, context), or records."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str | list[str] | dict[str, Any]] = Field(..., min_length=1, max_length=MAX_PREDICT_INPUTS)


class PredictResponse(BaseModel):
    predictions: list[Any]
    model: str


class ErrorBody(BaseModel):
    message: str
    type: str
    code: int | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
