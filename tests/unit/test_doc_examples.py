"""The documentation's tagged shell examples are found as the docs writer tags them (tests/doc_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_examples import SITE_HOME, BadExample, collect, documented, mirror_of_readme, parse

PAGE = """\
# A page

<!-- example: dev -->
```sh
. ./boxcut-dev.env
boxcut jobs
```

Untagged, so not run:

```sh
rm -rf /
```

<!-- example: dev exit=2 expect="partial" expect='a "quoted" word' -->
```bash
boxcut terminate --group Contractors --reason x --wait
```

1. In a list:

   <!-- example: dev expect="succeeded" -->
   ```sh
   curl -sS "$INTAKE_URL/v1/jobs" \\
     -H "Authorization: Bearer $OPERATOR_TOKEN"
   ```

<!-- example: dev -->

```sh
echo not immediately after its tag
```
"""


def test_tagged_blocks_are_found_with_their_attributes_and_untagged_ones_are_not() -> None:
    with pytest.raises(BadExample, match=r"page\.md:28: the example tag is not followed"):
        parse(PAGE, "page.md")
    first, second, listed = parse(PAGE.split("<!-- example: dev -->\n\n```sh")[0], "page.md")
    assert (first.id, first.script, first.exit_code, first.expect) == (
        "page.md:4", ". ./boxcut-dev.env\nboxcut jobs\n", 0, ())
    assert (second.id, second.exit_code, second.expect) == ("page.md:16", 2, ("partial", 'a "quoted" word'))
    assert second.script == "boxcut terminate --group Contractors --reason x --wait\n"
    # inside a list item: the fence's indentation comes off, the continuation keeps its own
    assert listed.id == "page.md:23" and listed.expect == ("succeeded",)
    assert listed.script == 'curl -sS "$INTAKE_URL/v1/jobs" \\\n  -H "Authorization: Bearer $OPERATOR_TOKEN"\n'


@pytest.mark.parametrize(("text", "problem"), [
    ('<!-- example: dev exits=1 -->\n```sh\ntrue\n```\n', "cannot read the example tag's attributes"),
    ('<!-- example: dev expect=unquoted -->\n```sh\ntrue\n```\n', "cannot read the example tag's attributes"),
    ("<!-- example: dev -->\n```json\n{}\n```\n", "not followed on the next line by a ```sh fence"),
    ("<!-- example: dev -->\n```sh\ntrue\n", "never closed"),
    ("<!-- example: dev -->", "not followed"),
])
def test_a_tag_that_cannot_be_run_is_an_error_not_a_silent_skip(text: str, problem: str) -> None:
    with pytest.raises(BadExample, match=problem):
        parse(text, "page.md")


def test_the_readme_comes_first_then_the_pages_sorted(tmp_path: Path) -> None:
    (tmp_path / "docs" / "guide").mkdir(parents=True)
    for name in ("README.md", "docs/b.md", "docs/guide/a.md", "docs/a.md"):
        (tmp_path / name).write_text("<!-- example: dev -->\n```sh\ntrue\n```\n")
    assert [e.id for e in collect(tmp_path, documented(tmp_path))] == [
        "README.md:2", "docs/a.md:2", "docs/b.md:2", "docs/guide/a.md:2"]


def test_the_site_home_page_is_the_readme_so_its_examples_run_once_there() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert (root / SITE_HOME).read_text(encoding="utf-8") == mirror_of_readme(readme)
    assert root / SITE_HOME not in documented(root) and root / "README.md" in documented(root)
