"""The FastAPI application of ``tunekit serve``: one finished run behind an OpenAI-style HTTP API.

Endpoints: ``GET /health``, ``GET /v1/models``; for runs whose task generates text (its job has
``generate``): ``POST /v1/chat/completions`` and ``POST /v1/completions`` (whole or streamed as server-sent
events); for the other tasks: ``POST /v1/predict`` (``{"inputs": [...]}`` -> ``{"predictions": [...]}``,
the task's own ``predict``, micro-batched across concurrent requests). Every error is a JSON body
``{"error": {"message", "type", "code"}}`` (the shape OpenAI clients read) with a 4xx status for a bad
request; nothing a client sends stops the server.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Iterator

from tunekit.errors import TunekitError
from tunekit.protocols import optional
from tunekit.serve.batching import MicroBatcher
from tunekit.serve.generation import Answer, Generator
from tunekit.serve.schemas import ChatRequest, CompletionRequest, PredictRequest, PredictResponse, Sampling
from tunekit.tasks.protocol import JOB_OPTIONAL

GENERATE_ENDPOINTS = "/v1/chat/completions or /v1/completions"


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": status}})


def _validation_message(exc: Any) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request (" + "; ".join(parts) + "); see docs/deployment.md for the request fields."


class Service:
    """What the endpoints share: the loaded run, the model lock, the generator and the predict batcher."""

    def __init__(self, loaded: Any, max_batch: int = 32, batch_wait_s: float = 0.005) -> None:
        self.loaded = loaded
        self.name = loaded.folder.name
        self.task = loaded.config.task_name
        self.lock = threading.Lock()  # the model is not thread-safe: one forward pass at a time
        self.generates = optional(loaded.job, "generate", JOB_OPTIONAL) is not None
        self.generator = Generator(loaded, self.lock) if self.generates else None
        self.batcher = None if self.generates else MicroBatcher(
            lambda inputs: loaded.job.predict(loaded.model, inputs), self.lock, max_batch, batch_wait_s)
        self.created = int(time.time())

    def wrong_endpoint(self, wants_generation: bool) -> Any:
        if wants_generation and not self.generates:
            return _error(400, f"this run's task {self.task!r} does not generate text; use POST /v1/predict.")
        if not wants_generation and self.generates:
            return _error(400, f"this run's task {self.task!r} generates text; use POST {GENERATE_ENDPOINTS}.")
        return None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


def _chat_body(service: Service, answer: Answer, chat: bool) -> dict[str, Any]:
    usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
             "total_tokens": answer.prompt_tokens + answer.completion_tokens}
    choice: dict[str, Any] = {"index": 0, "finish_reason": answer.finish_reason}
    if chat:
        choice["message"] = {"role": "assistant", "content": answer.text}
    else:
        choice.update(text=answer.text, logprobs=None)
    return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": service.name, "choices": [choice], "usage": usage}


def _events(service: Service, item: Any, request: Sampling, chat: bool) -> Iterator[str]:
    """Server-sent events of one streamed answer, in OpenAI's chunk format, ending with ``[DONE]``."""
    assert service.generator is not None
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
    head = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": service.name}

    def chunk(text: str | None, finish: str | None, role: bool = False) -> str:
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return "data: " + json.dumps({**head, "choices": [choice]}) + "\n\n"

    if chat:
        yield chunk("", None, role=True)
    try:
        for piece in service.generator.stream(item, request):
            yield chunk(None, piece.finish_reason) if isinstance(piece, Answer) else chunk(piece, None)
    except TunekitError as exc:  # the status line is sent already: report in the stream
        yield "data: " + json.dumps({"error": {"message": str(exc), "type": "invalid_request_error"}}) + "\n\n"
    yield "data: [DONE]\n\n"


def _generate(service: Service, item: Any, request: Sampling, chat: bool) -> Any:
    from fastapi.responses import StreamingResponse

    wrong = service.wrong_endpoint(True)
    if wrong is not None:
        return wrong
    assert service.generator is not None
    if request.stream:
        return StreamingResponse(_events(service, item, request, chat), media_type="text/event-stream")
    return _chat_body(service, service.generator.answer(item, request), chat)


def _add_routes(app: Any, service: Service) -> None:
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "run": str(service.loaded.folder), "task": service.task,
                "method": service.loaded.config.method_name, "model": service.loaded.config.model.name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.name, "object": "model", "created": service.created,
                                            "owned_by": "tunekit"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(request: ChatRequest) -> Any:
        messages = [m.model_dump() for m in request.messages]
        return _generate(service, messages, request, chat=True)

    @app.post("/v1/completions")
    def completions(request: CompletionRequest) -> Any:
        if not request.text():
            return _error(400, "prompt must be one non-empty text (a list must hold exactly one); send one per request.")
        return _generate(service, request.text(), request, chat=False)

    @app.post("/v1/predict", response_model=PredictResponse)
    def predict(request: PredictRequest) -> Any:
        wrong = service.wrong_endpoint(False)
        if wrong is not None:
            return wrong
        assert service.batcher is not None
        inputs = [tuple(x) if isinstance(x, list) else x for x in request.inputs]
        outputs = service.batcher.submit(inputs).result()
        return {"predictions": outputs, "model": service.name}


def create_app(loaded: Any, *, max_batch: int = 32, batch_wait_s: float = 0.005) -> Any:
    """The FastAPI app serving ``loaded`` (a ``tunekit.runs.loading.LoadedRun``).

    ``max_batch`` inputs at most share one ``predict`` call; the batcher waits ``batch_wait_s`` seconds for more
    requests after the first. ``app.state.service`` holds the shared state (``close()`` stops the batcher).
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    service = Service(loaded, max_batch, batch_wait_s)
    app = FastAPI(title="tunekit serve", description=f"run {service.name} ({service.task})")
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        return _error(400, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        hint = f" (this server has /health, /v1/models and {GENERATE_ENDPOINTS if service.generates else '/v1/predict'})"
        return _error(exc.status_code, f"{exc.detail}{hint if exc.status_code in (404, 405) else ''}.")

    @app.exception_handler(TunekitError)
    async def bad_input(request: Request, exc: TunekitError) -> Any:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def failure(request: Request, exc: Exception) -> Any:
        return _error(500, f"the server failed on this request ({type(exc).__name__}: {exc}).", "server_error")

    _add_routes(app, service)
    return app
