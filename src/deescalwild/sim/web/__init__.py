"""The web simulator (FastAPI): the page, the REST API, an OpenAI-compatible endpoint.

`create_app`, `serve` and `Limits` are imported from `deescalwild.sim.web.app`; importing this
package imports neither FastAPI nor uvicorn (the CLI's `--help` stays fast)."""
