"""Offboarding files: validated whole, every problem reported at once with its line, repeats merged."""

from __future__ import annotations

import pytest

from worker.errors import BoxcutError, InvalidOffboardFile, RowProblem
from worker.jobs.offboarding_file import MAX_LISTED_PROBLEMS, MAX_ROWS, OffboardFile, parse_csv, parse_json


def refused(data: bytes) -> InvalidOffboardFile:
    """The error parse_csv raises for `data` (fails the test if it parses)."""
    with pytest.raises(InvalidOffboardFile) as caught:
        parse_csv(data)
    return caught.value


def refused_json(items: object) -> InvalidOffboardFile:
    with pytest.raises(InvalidOffboardFile) as caught:
        parse_json(items)
    return caught.value


def lines_of(err: InvalidOffboardFile) -> list[int]:
    return [p.line for p in err.problems]


def only_problem(err: InvalidOffboardFile) -> RowProblem:
    assert len(err.problems) == 1, err.problems
    return err.problems[0]


# --- good files ------------------------------------------------------------------------------------------


def test_good_file_with_bom_mixed_case_header_blank_lines_crlf_and_quoted_comma() -> None:
    data = (
        b"\xef\xbb\xbf User_ID ,USER_LOGIN,Group_Id,group_name,Reason\r\n"
        b"123,,,,\"layoff, wave 2\"\r\n"
        b"\r\n"
        b", jdoe@example.com ,,,\r\n"
        b",,55,,\r\n"
        b",,,Contractors,\r\n"
    )
    parsed = parse_csv(data)
    assert parsed.specs == [
        {"type": "user", "id": "123", "reason": "layoff, wave 2"},
        {"type": "user", "login": "jdoe@example.com"},
        {"type": "group", "id": "55"},
        {"type": "group", "name": "Contractors"},
    ]
    assert [t.lines for t in parsed.targets] == [(2,), (4,), (5,), (6,)]
    assert (parsed.rows, parsed.merged) == (4, 0)


def test_fewer_cells_than_columns_is_fine() -> None:
    parsed = parse_csv(b"user_id,user_login,reason\n,a@example.com\n7\n")
    assert parsed.specs == [{"type": "user", "login": "a@example.com"}, {"type": "user", "id": "7"}]


def test_line_numbers_are_physical_lines_across_a_multi_line_quoted_reason() -> None:
    data = b'user_id,reason\n1,"first line\nsecond line"\n\n2,x\n'
    parsed = parse_csv(data)
    assert [t.lines for t in parsed.targets] == [(2,), (5,)]
    assert parsed.targets[0].spec["reason"] == "first line\nsecond line"


def test_only_cr_line_endings() -> None:
    assert parse_csv(b"user_id\r1\r2\r").specs == [{"type": "user", "id": "1"}, {"type": "user", "id": "2"}]


def test_a_41_row_file_gives_41_targets() -> None:
    data = b"user_login,reason\n" + b"".join(b"person%d@example.com,layoff\n" % i for i in range(41))
    parsed = parse_csv(data)
    assert len(parsed.targets) == 41 and parsed.rows == 41 and parsed.merged == 0
    assert parsed.targets[-1].spec == {"type": "user", "login": "person40@example.com", "reason": "layoff"}
    assert parsed.targets[-1].lines == (42,)


def test_specs_are_copies() -> None:
    parsed = parse_csv(b"user_id\n1\n")
    parsed.specs[0]["id"] = "999"
    assert parsed.targets[0].spec["id"] == "1"


# --- merging repeats -------------------------------------------------------------------------------------


def test_repeated_targets_are_merged_with_their_lines() -> None:
    data = (
        b"user_id,user_login,group_name,reason\n"
        b",Jane@Example.com,,\n"         # 2
        b"42,,,\n"                       # 3
        b",jane@example.COM,,layoff\n"   # 4: same login, other case
        b",,Sales ,\n"                   # 5
        b" 42 ,,,\n"                     # 6: same id after stripping
        b",,Sales,\n"                    # 7: same name after stripping
        b",,sales,\n"                    # 8: names compare exactly: another group
    )
    parsed = parse_csv(data)
    assert parsed.specs == [
        {"type": "user", "login": "Jane@Example.com", "reason": "layoff"},
        {"type": "user", "id": "42"},
        {"type": "group", "name": "Sales"},
        {"type": "group", "name": "sales"},
    ]
    assert [t.lines for t in parsed.targets] == [(2, 4), (3, 6), (5, 7), (8,)]
    assert (parsed.rows, parsed.merged) == (7, 3)


def test_different_reasons_on_repeats_keep_the_first() -> None:
    parsed = parse_csv(b"user_id,reason\n1,first\n1,second\n1,\n")
    assert parsed.specs == [{"type": "user", "id": "1", "reason": "first"}]
    assert parsed.targets[0].lines == (2, 3, 4)


def test_an_id_and_a_login_are_not_merged() -> None:
    # Whether they are the same person is only known after resolving.
    parsed = parse_csv(b"user_id,user_login\n1,\n,a@example.com\n")
    assert len(parsed.targets) == 2 and parsed.merged == 0


def test_a_user_and_a_group_with_the_same_id_are_not_merged() -> None:
    parsed = parse_csv(b"user_id,group_id\n5,\n,5\n")
    assert parsed.specs == [{"type": "user", "id": "5"}, {"type": "group", "id": "5"}]


# --- refused whole, every problem with its line ----------------------------------------------------------


def test_the_issue_case_three_bad_rows_are_refused_whole_with_their_lines() -> None:
    data = (
        b"user_id,user_login,group_id,group_name,reason\n"
        b"101,,,,layoff\n"
        b"10x2,,,,layoff\n"              # 3: malformed id
        b",a@example.com,,,\n"
        b",,,,\n"                        # 5: only commas
        b"103,,,,\n"
        b",b@example.com,,,,surprise\n"  # 7: value in a sixth column
        b"104,,,,\n"
    )
    err = refused(data)
    assert lines_of(err) == [3, 5, 7]
    assert str(err).splitlines() == [
        "3 bad rows; nothing was submitted",
        "line 3: user_id '10x2' is not a Box id (digits only)",
        "line 5: empty row: names no user or group",
        "line 7: value in an unknown column 6",
    ]
    assert isinstance(err, BoxcutError)


def test_unknown_header_column_is_a_problem_at_line_1_and_rows_are_still_checked() -> None:
    err = refused(b"user_id,Email\n1,a@example.com\nabc,\n")
    assert err.problems == [
        RowProblem(1, "unknown column 'email'; expected user_id, user_login, group_id, group_name, reason"),
        RowProblem(3, "user_id 'abc' is not a Box id (digits only)"),
    ]


def test_a_header_naming_no_target_column() -> None:
    problem = only_problem(refused(b"123,reason\n456,x\n"))
    assert problem.line == 1 and "header" in problem.problem and "user_id" in problem.problem


def test_a_semicolon_separated_file_gets_a_hint() -> None:
    problem = only_problem(refused(b"user_id;reason\n1;x\n"))
    assert problem.line == 1 and "semicolons" in problem.problem


def test_a_repeated_header_column() -> None:
    problem = only_problem(refused(b"user_id,USER_ID\n1,2\n"))
    assert problem == RowProblem(1, "column 'user_id' appears more than once")


def test_a_value_under_an_unnamed_column() -> None:
    err = refused(b"user_id,,reason\n1,,x\n2,oops,x\n")
    assert err.problems == [RowProblem(3, "value in an unknown column 2")]


def test_empty_cells_beyond_the_header_are_ignored() -> None:
    # Spreadsheets pad rows with trailing commas; only a value there could be a misplaced target.
    assert parse_csv(b"user_id\n1,,,\n").specs == [{"type": "user", "id": "1"}]


def test_a_blank_line_is_ignored_but_a_whitespace_or_comma_row_is_bad() -> None:
    err = refused(b"user_id,reason\n\n1,x\n   \n,\n\n")
    assert lines_of(err) == [4, 5]
    assert all(p.problem == "empty row: names no user or group" for p in err.problems)


def test_a_reason_alone_names_no_one() -> None:
    assert only_problem(refused(b"user_id,reason\n,layoff\n")) == RowProblem(
        2, "gives a reason but names no user or group")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (b"1,a@example.com,,", "gives both user_id and user_login: give one, so the row cannot name two people"),
        (b",,5,Sales", "gives both group_id and group_name: give one, so the row cannot name two groups"),
        (b"1,,5,", "names both a user (user_id) and a group (group_id): give one per row"),
        (b",a@example.com,,Sales", "names both a user (user_login) and a group (group_name): give one per row"),
    ],
)
def test_a_row_names_exactly_one_target(row: bytes, expected: str) -> None:
    err = refused(b"user_id,user_login,group_id,group_name\n" + row + b"\n")
    assert only_problem(err) == RowProblem(2, expected)


@pytest.mark.parametrize(
    ("column", "value", "fragment"),
    [
        ("user_id", "12 34", "is not a Box id (digits only)"),
        ("user_id", "-5", "is not a Box id (digits only)"),
        ("user_id", "\u0661\u0662", "is not a Box id (digits only)"),  # Arabic-Indic digits
        ("user_id", "1" * 21, "at most 20 digits"),
        ("group_id", "1e5", "is not a Box id"),
        ("user_login", "jdoe", "exactly one @"),
        ("user_login", "a@b@example.com", "exactly one @"),
        ("user_login", "j doe@example.com", "contains a space"),
        ("user_login", "@example.com", "nothing before the @"),
        ("user_login", "jdoe@localhost", "needs a dot"),
        ("user_login", "jdoe@example.", "needs a dot"),
        ("user_login", "x@" + "a" * 250 + ".com", "longer than 254"),
        ("group_name", "g" * 256, "at most 255"),
    ],
)
def test_bad_values(column: str, value: str, fragment: str) -> None:
    err = refused(f"{column}\n{value}\n".encode())
    problem = only_problem(err)
    assert problem.line == 2 and fragment in problem.problem and column in problem.problem


def test_value_limits_are_inclusive() -> None:
    data = f"user_id,reason\n{'9' * 20},{'r' * 500}\n".encode()
    assert parse_csv(data).targets[0].spec["reason"] == "r" * 500
    assert parse_csv(f"group_name\n{'g' * 255}\n".encode()).specs == [{"type": "group", "name": "g" * 255}]


def test_a_reason_longer_than_500_chars() -> None:
    problem = only_problem(refused(f"user_id,reason\n1,{'r' * 501}\n".encode()))
    assert problem == RowProblem(2, "reason is 501 characters long; at most 500 are allowed")


def test_several_problems_in_one_row_share_its_line() -> None:
    problem = only_problem(refused(b"user_id,user_login\nx,y\n"))
    assert problem.line == 2
    assert "both user_id and user_login" in problem.problem
    assert "user_id 'x'" in problem.problem and "user_login 'y'" in problem.problem


def test_a_stray_quote_is_a_problem_at_its_line() -> None:
    err = refused(b'user_id,reason\n1,"ok"\n2,"bad"x\n3,fine\n')
    assert lines_of(err) == [3]


def test_an_unclosed_quote_does_not_swallow_rows_silently() -> None:
    problem = only_problem(refused(b'user_id,reason\n1,"never closed\n2,x\n3,y\n'))
    assert problem.line == 2 and "never closed" in problem.problem


def test_the_message_lists_at_most_100_problems() -> None:
    count = MAX_LISTED_PROBLEMS + 7
    err = refused(b"user_id\n" + b"x\n" * count)
    assert len(err.problems) == count
    message = str(err).splitlines()
    assert message[0] == f"{count} bad rows; nothing was submitted"
    assert len(message) == 1 + MAX_LISTED_PROBLEMS + 1
    assert message[-1] == "... and 7 more"


def test_one_bad_row_is_singular() -> None:
    assert str(refused(b"user_id\nx\n")).splitlines()[0] == "1 bad row; nothing was submitted"


# --- whole-file problems ---------------------------------------------------------------------------------


def test_not_utf8_names_the_line_and_byte_offset() -> None:
    data = b"user_login\nok@example.com\nj\xe9r\xf4me@example.com\n"  # Latin-1, as old Excel saves
    problem = only_problem(refused(data))
    assert problem.line == 3
    offset = data.index(b"\xe9")
    assert "not UTF-8" in problem.problem and f"byte 0xe9 at byte offset {offset}" in problem.problem


def test_not_utf8_offset_counts_the_bom() -> None:
    data = b"\xef\xbb\xbfuser_id\n\xff\n"
    problem = only_problem(refused(data))
    assert problem.line == 2 and "byte offset 11" in problem.problem


def test_utf8_names_are_fine() -> None:
    parsed = parse_csv("group_name\nÉquipe Zürich\n".encode())
    assert parsed.specs == [{"type": "group", "name": "Équipe Zürich"}]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"user_id\n1\x002\n", "NUL byte"),
        (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
        ("user_id\n1\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_binary_files_are_refused_clearly(data: bytes, fragment: str) -> None:
    err = refused(data)
    assert fragment in only_problem(err).problem


def test_nul_byte_names_its_line() -> None:
    assert only_problem(refused(b"user_id\n1\n2\x00\n")).line == 3


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf"])
def test_an_empty_file_has_no_rows(data: bytes) -> None:
    err = refused(data)
    assert "no rows" in only_problem(err).problem
    assert str(err).splitlines()[1] == "file: no rows: the file is empty"


def test_a_header_only_file_has_no_rows() -> None:
    err = refused(b"user_id,user_login\r\n\r\n")
    assert only_problem(err) == RowProblem(0, "no rows: the file has a header but no data rows")


def test_more_than_the_row_limit_is_one_problem() -> None:
    data = b"user_id\n" + b"1\n" * (MAX_ROWS + 1)
    err = refused(data)
    assert "more than 100,000 rows" in only_problem(err).problem


def test_exactly_the_row_limit_parses() -> None:
    parsed = parse_csv(b"user_id\n" + b"1\n" * MAX_ROWS)
    assert parsed.rows == MAX_ROWS and parsed.merged == MAX_ROWS - 1 and len(parsed.targets) == 1


# --- JSON ------------------------------------------------------------------------------------------------


def test_json_good_list() -> None:
    parsed = parse_json([
        {"user_id": 123, "reason": "layoff"},
        {"user_login": " a@example.com "},
        {"group_id": "55", "reason": None},
        {"group_name": "Contractors", "user_id": None},
        {"user_id": "123"},
    ])
    assert isinstance(parsed, OffboardFile)
    assert parsed.specs == [
        {"type": "user", "id": "123", "reason": "layoff"},
        {"type": "user", "login": "a@example.com"},
        {"type": "group", "id": "55"},
        {"type": "group", "name": "Contractors"},
    ]
    assert [t.lines for t in parsed.targets] == [(1, 5), (2,), (3,), (4,)]
    assert (parsed.rows, parsed.merged) == (5, 1)


def test_json_problems_say_item() -> None:
    err = refused_json([
        {"user_id": "1"},
        "a@example.com",
        {"email": "a@example.com"},
        {"user_id": True},
        {"user_login": 5},
        {"user_id": "1", "user_login": "a@example.com"},
        {},
        {"group_id": 1.5},
    ])
    assert lines_of(err) == [2, 3, 4, 5, 6, 7, 8]
    text = str(err).splitlines()
    assert text[0] == "7 bad items; nothing was submitted"
    assert text[1] == 'item 2: must be an object such as {"user_login": "a@example.com"}, not a string'
    assert text[2] == "item 3: unknown key 'email'; expected user_id, user_login, group_id, group_name, reason"
    assert text[3] == "item 4: user_id must be a string or a whole number, not true/false"
    assert text[4] == "item 5: user_login must be a string, not a number"
    assert text[5] == "item 6: gives both user_id and user_login: give one, so the item cannot name two people"
    assert text[6] == "item 7: empty item: names no user or group"
    assert text[7] == "item 8: group_id must be a string or a whole number, not a number"


def test_json_negative_int_id_is_not_a_box_id() -> None:
    assert "is not a Box id" in only_problem(refused_json([{"user_id": -4}])).problem


@pytest.mark.parametrize(("body", "fragment"), [({"user_id": "1"}, "an object"), ("x", "a string"), (None, "null")])
def test_json_not_a_list(body: object, fragment: str) -> None:
    err = refused_json(body)
    problem = only_problem(err)
    assert problem.line == 0 and "must be a list" in problem.problem and fragment in problem.problem
    assert str(err).splitlines()[1].startswith("request: must be a list")


def test_json_empty_list() -> None:
    assert only_problem(refused_json([])) == RowProblem(0, "no items: the list is empty")


def test_json_too_many_items() -> None:
    assert "more than 100,000 items" in only_problem(refused_json([{"user_id": "1"}] * (MAX_ROWS + 1))).problem
