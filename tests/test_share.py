"""lnn_nav.share: one lookup of the package's shared files for the nodes and the `lnn-nav` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from lnn_nav.nodes.fly import SetupError, config_path
from lnn_nav.share import share_candidates, share_directory, share_path


def test_shared_files_are_found_and_the_directory_holds_the_package() -> None:
    directory, how = share_directory()
    assert directory is not None and how in {"ament index", "python prefix", "source tree"}
    assert (directory / "package.xml").is_file()
    path = share_path("config/controller.yaml")
    assert path.is_file() and path.name == "controller.yaml"
    assert config_path("controller.yaml") == path  # the nodes' lookup is this one


def test_a_missing_file_names_every_place_looked_in() -> None:
    with pytest.raises(FileNotFoundError) as info:
        share_path("config/no_such.yaml")
    for directory, _ in share_candidates():
        assert str(directory / "config/no_such.yaml") in str(info.value)
    with pytest.raises(SetupError, match="no_such.yaml not found; looked in"):  # the nodes' error type
        config_path("no_such.yaml")


def test_the_source_tree_is_the_last_resort() -> None:
    directory, how = share_candidates()[-1]
    assert how == "source tree" and directory == Path(__file__).resolve().parent.parent
