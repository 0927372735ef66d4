"""`rareflow reports serve`: a static file server over the registry, so that the Prefect UI's
links to monitoring reports open in a browser (``file://`` links do not, from a web page)."""

from __future__ import annotations

import typer

from flows.cli_config import DEFAULT_REGISTRY, project_defaults
from flows.cli_errors import reported
from flows.cli_options import RegistryDir
from schemas.config import REPORTS_PORT, REPORTS_URL_ENV
from schemas.errors import EXIT_OK

reports_app = typer.Typer(no_args_is_help=True,
                          help="Serve the registry's reports so links in the Prefect UI open.")


@reports_app.command("serve")
@reported
def reports_serve(
    registry: RegistryDir = None,
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to listen on (0.0.0.0: every interface; only "
                                  "behind your own access control)."),
    port: int = typer.Option(REPORTS_PORT, "--port", help="Port to listen on (0: any free)."),
) -> int:
    """Serve the registry folder over http until Ctrl-C; runs link reports here when they
    have RAREFLOW_REPORTS_URL set to the printed address."""
    from tasks.monitor.reports_server import make_server

    root = registry or project_defaults().get("registry", DEFAULT_REGISTRY)
    server = make_server(root, host=host, port=port)
    url = f"http://{host}:{server.server_port}"
    typer.echo(f"Serving {root} at {url}/ (Ctrl-C stops). Start runs with "
               f"{REPORTS_URL_ENV}={url} so their report links in the Prefect UI open here.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()
    return EXIT_OK
