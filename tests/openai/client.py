"""Drives crabpot's OpenAI-compatible API with the real `openai` package.

Usage: client.py BASE_URL TOKEN MODEL MODE TEXT
  MODE `complete`: lists the models, then one non-streamed completion.
  MODE `stream`:   one streamed completion, keeping each chunk's text.
  MODE `ask`:      one non-streamed completion of TEXT alone.
Prints one JSON document on stdout; an API error is printed as {"error": ...}, exit 0, so the
Rust test can assert on it.
"""

import json
import sys

import openai


def main() -> None:
    base_url, token, model, mode, text = sys.argv[1:6]
    client = openai.OpenAI(base_url=base_url, api_key=token, timeout=240.0, max_retries=0)
    out = {"openai_version": openai.__version__}
    try:
        if mode == "complete":
            out["models"] = [m.id for m in client.models.list().data]
            completion = client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": "ignored: the agent has its own"},
                    {"role": "user", "content": "an earlier message, not routed"},
                    {"role": "assistant", "content": "an earlier answer"},
                    {"role": "user", "content": text},
                ],
            )
            out["object"] = completion.object
            out["reply"] = completion.choices[0].message.content
            out["finish_reason"] = completion.choices[0].finish_reason
        elif mode == "stream":
            chunks = []
            finish = None
            for chunk in client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": text}],
                stream=True,
            ):
                if chunk.object != "chat.completion.chunk":
                    raise SystemExit(f"unexpected chunk object {chunk.object!r}")
                choice = chunk.choices[0]
                if choice.delta.content:
                    chunks.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
            out["chunks"] = chunks
            out["reply"] = "".join(chunks)
            out["finish_reason"] = finish
        elif mode == "ask":
            completion = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}]
            )
            out["reply"] = completion.choices[0].message.content
            out["finish_reason"] = completion.choices[0].finish_reason
        elif mode == "unknown-model":
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}]
            )
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    except openai.APIStatusError as e:
        out["error"] = {"status": e.status_code, "body": e.body}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
