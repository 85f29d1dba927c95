"""A voice framework's Realtime service, unchanged but for its base URL and key: pipecat's
``OpenAIRealtimeLLMService`` in a pipeline against the local stack's ``realtime`` stage. It
configures the session its own way (session.update on session.created, its context as
conversation items, a second session.update, response.create), answers a function it was given,
and must finish each turn with speech and no error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from .conftest import CHECK_ORDER, TOKEN, WAIT, RealtimeStack, realtime_stack

pytestmark = pytest.mark.timeout(240)


class Collector(FrameProcessor):
    """The end of the pipeline: keeps every frame; ``ended`` counts finished responses."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self.changed = asyncio.Condition()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        async with self.changed:
            self.frames.append(frame)
            self.changed.notify_all()
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]

    async def wait_for(self, responses: int) -> None:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(
                lambda: self.of(ErrorFrame) or len(self.of(LLMFullResponseEndFrame)) >= responses
            )


@dataclass
class Running:
    llm: OpenAIRealtimeLLMService
    task: PipelineWorker
    collector: Collector
    calls: list[dict[str, Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def pipeline(stack: RealtimeStack) -> AsyncIterator[Running]:
    logger.remove()  # pipecat logs every frame at DEBUG
    llm = OpenAIRealtimeLLMService(
        api_key=TOKEN,
        base_url=stack.base_url + "/realtime",
        settings=OpenAIRealtimeLLMService.Settings(model="gpt-realtime"),
    )
    collector = Collector()
    task = PipelineWorker(Pipeline([llm, collector]))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    running = asyncio.create_task(runner.run())
    try:
        yield Running(llm, task, collector)
    finally:
        await task.cancel()
        await asyncio.wait_for(running, WAIT)


@pytest.fixture
async def stack() -> AsyncIterator[RealtimeStack]:
    async with realtime_stack() as running:
        yield running


def spoken_text(collector: Collector) -> str:
    return " ".join(f.text for f in collector.of(TTSTextFrame))


async def test_pipecat_completes_a_turn_with_a_deployment_tool(stack: RealtimeStack) -> None:
    async with pipeline(stack) as running:
        context = LLMContext([{"role": "user", "content": "what time is it in Tokyo"}])
        await running.task.queue_frames([LLMContextFrame(context)])
        await running.collector.wait_for(responses=1)
        collector = running.collector
    assert collector.of(ErrorFrame) == []
    assert "in Asia/Tokyo." in spoken_text(collector)
    audio = collector.of(TTSAudioRawFrame)
    seconds = sum(len(f.audio) for f in audio) / 2 / audio[0].sample_rate
    assert audio[0].sample_rate == 24000 and seconds > 1.0


async def test_pipecat_runs_a_function_it_declared_and_hears_the_answer(
    stack: RealtimeStack,
) -> None:
    calls: list[dict[str, Any]] = []

    async def check_order(params: FunctionCallParams) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"status": "shipped on Monday"})

    parameters = CHECK_ORDER["parameters"]
    schema = FunctionSchema(
        name="check_order",
        description=str(CHECK_ORDER["description"]),
        properties=parameters["properties"],  # type: ignore[index]
        required=parameters["required"],  # type: ignore[index]
        handler=check_order,
    )
    async with pipeline(stack) as running:
        context = LLMContext(
            [{"role": "user", "content": "where is my red order"}], tools=ToolsSchema([schema])
        )
        await running.task.queue_frames([LLMContextFrame(context)])
        await running.collector.wait_for(responses=2)
        collector = running.collector
    assert collector.of(ErrorFrame) == []
    assert calls == [{"colour": "red"}]
    assert "shipped on Monday" in spoken_text(collector)
