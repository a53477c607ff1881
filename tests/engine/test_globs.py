"""Pachyderm glob semantics (ohmyglob + PFS glob matching).

Expected values of the quirk cases were checked against ohmyglob itself
(github.com/pachyderm/ohmyglob d5b4777, the version pachyderm v2.11 pins).
"""

import re

import pytest

from pachlocal.globs import (
    GlobError,
    Match,
    UnsupportedGlob,
    clean_path,
    compile_glob,
    match_paths,
)

FILES = ["/a-b", "/a.txt", "/a/b/c", "/a/b/d", "/a/e", "/z"]


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [("", "/"), (".", "/"), ("*", "/*"), ("/*/", "/*"), ("//a//b", "/a/b"), ("a/../b", "/b")],
)
def test_glob_is_cleaned_like_pfsfile_cleanpath(raw: str, cleaned: str) -> None:
    assert clean_path(raw) == cleaned
    assert compile_glob(raw).pattern == cleaned


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("/*", ["/a", "/a.txt"], ["/a/b", "/"]),
        ("/*.txt", ["/a.txt", "/.txt"], ["/a/b.txt", "/a.csv"]),
        ("/**", ["/a", "/a/b", "/a/b/c.txt"], []),
        ("/**.txt", ["/a.txt", "/a/b/c.txt"], ["/a/b/c.csv"]),
        ("/a/?", ["/a/b"], ["/a/bc", "/a/", "/a//"]),
        ("/[ab]*", ["/a1", "/b"], ["/c", "/A"]),
        ("/[!ab]x", ["/cx", "//x"], ["/ax", "/bx"]),  # a negated class matches '/'
        ("/[a!b]", ["/c"], ["/a"]),  # '!' anywhere in a class negates it
        ("/[a-c]", ["/b"], ["/d"]),
        ("/[[:digit:]]", ["/7", "/["], ["/x"]),
        ("/{a,bc}/*", ["/a/x", "/bc/y"], ["/b/x", "/abc/x"]),
        ("/{a,b", ["/b"], ["/{a,b"]),  # an unclosed brace closes at the end
        ("/a)b,c|d", ["/a)b,c|d"], []),  # stray group characters are literal
        ("/a\\*", ["/a*"], ["/ab"]),
        ("/!(*.txt)", ["/x.csv"], ["/x.txt"]),
    ],
)
def test_match(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    g = compile_glob(pattern)
    assert [p for p in matching if g.match(p)] == matching
    assert [p for p in not_matching if g.match(p)] == []


def test_directory_paths_match_without_their_trailing_slash() -> None:
    assert compile_glob("/a").match("/a/")
    assert compile_glob("/").match("/")
    assert not compile_glob("/*").match("/")


def test_captures_and_replace() -> None:
    g = compile_glob("/(*)/(**)")
    assert g.captures("/x/y/z") == ["/x/y/z", "x", "y/z"]
    assert g.replace("/x/y/z", "$2|$1|$0|$9|${1}|$$|$a|${1") == "y/z|x|/x/y/z||x|$|$a|${1"
    assert g.replace("/x/y/z", "no captures") == "no captures"
    assert compile_glob("/(*)_(*)").replace("/nomatch", "k$1-$2") == "k-"
    assert compile_glob("/(*)_(*)").captures("/nomatch") is None


def test_extglob_captures() -> None:
    assert compile_glob("/*(a|b)c").captures("/ababc") == ["/ababc", "abab"]
    assert compile_glob("/?(x)y").captures("/y") == ["/y", ""]
    assert compile_glob("/@(a|b)-(*).csv").replace("/b-7.csv", "$2$1") == "7b"
    assert compile_glob("/!(*.txt)").captures("/x.csv") == ["/x.csv", "x.csv"]


def test_compiled_globs_are_cached() -> None:
    assert compile_glob("/cache/*") is compile_glob("/cache/*")


@pytest.mark.parametrize("pattern", ["/[abc", "/^(a)", "/[z-a]", "/[]a]"])
def test_bad_pattern_raises_glob_error_naming_it(pattern: str) -> None:
    with pytest.raises(GlobError, match=re.escape(f"invalid glob {pattern!r}")):
        compile_glob(pattern)


def _paths(pattern: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.path, m.files) for m in match_paths(pattern, FILES)]


def test_root_glob_is_one_datum_with_everything() -> None:
    assert match_paths("/", FILES) == [Match("/", tuple(FILES))]
    assert match_paths("/", []) == []


def test_top_level_glob_lists_files_and_directories_in_pfs_order() -> None:
    # PFS order: directories carry a trailing '/', so "/a.txt" < "/a/"
    assert _paths("/*") == [
        ("/a-b", ("/a-b",)),
        ("/a.txt", ("/a.txt",)),
        ("/a/", ("/a/b/c", "/a/b/d", "/a/e")),
        ("/z", ("/z",)),
    ]
    assert [m.is_dir for m in match_paths("/*", FILES)] == [False, False, True, False]


def test_second_level_glob() -> None:
    assert _paths("/*/*") == [("/a/b/", ("/a/b/c", "/a/b/d")), ("/a/e", ("/a/e",))]


def test_directory_glob_holds_its_subtree() -> None:
    assert _paths("/a") == [("/a/", ("/a/b/c", "/a/b/d", "/a/e"))]
    assert _paths("/a/b") == [("/a/b/", ("/a/b/c", "/a/b/d"))]


def test_a_directory_and_files_inside_it_are_all_matches() -> None:
    assert _paths("/a/**") == [
        ("/a/b/", ("/a/b/c", "/a/b/d")),
        ("/a/b/c", ("/a/b/c",)),
        ("/a/b/d", ("/a/b/d",)),
        ("/a/e", ("/a/e",)),
    ]


def test_unsorted_input_and_no_match() -> None:
    assert _paths("/nothing*") == []
    assert [m.path for m in match_paths("/*", ["/b", "/a"])] == ["/a", "/b"]


# Python's backtracking `re` takes exponential time on these; RE2 runs in linear time.
EXPONENTIAL = "/+(a|aa)"


@pytest.mark.parametrize("length", [60, 10_000])
def test_exponential_glob_does_not_match_a_long_near_miss(length: int) -> None:
    g = compile_glob(EXPONENTIAL)
    near_miss = "/" + "a" * length + "b"
    assert not g.match(near_miss)
    assert g.captures(near_miss) is None
    assert _paths_of(EXPONENTIAL, [near_miss, "/" + "a" * length]) == ["/" + "a" * length]


@pytest.mark.parametrize("length", [60, 10_000])
def test_exponential_glob_matches_and_captures_a_long_name(length: int) -> None:
    name = "/" + "a" * length
    assert compile_glob(EXPONENTIAL).captures(name) == [name, name[1:]]
    assert compile_glob("/(*)/+(a|aa)b").replace("/x/" + "a" * length + "b", "$1-$2") == (
        "x-" + "a" * length
    )


def _paths_of(pattern: str, files: list[str]) -> list[str]:
    return [m.path for m in match_paths(pattern, files)]


def test_negation_on_a_long_name() -> None:
    g = compile_glob("/!(*.txt)")
    name = "/" + "x" * 10_000
    assert g.captures(name) == [name, name[1:]]
    assert not g.match(name + ".txt")
    assert compile_glob("/!(+(a|aa))b").captures("/" + "a" * 10_000 + "b") is None


def test_groups_inside_a_negation_keep_their_numbers_and_stay_empty() -> None:
    g = compile_glob("/!(@(x))-(*)")
    assert g.captures("/ab-cd") == ["/ab-cd", "ab", "", "cd"]
    assert g.replace("/ab-cd", "$1.$2.$3") == "ab..cd"
    assert g.captures("/x-cd") is None
    assert compile_glob("/(*).!(txt|csv)").captures("/a.json") == ["/a.json", "a", "json"]
    assert compile_glob("/!(*.txt)/(*)").captures("/a.csv/b") == ["/a.csv/b", "a.csv", "b"]


def test_negated_classes_beside_a_negation() -> None:
    assert [p for p in ["/b", "/-", "/a"] if compile_glob("/!(x)[!a-]").match(p)] == ["/b"]
    assert [p for p in ["/b", "/-", "/a"] if compile_glob("/!(x)[!-a]").match(p)] == ["/b"]


def test_captures_of_names_outside_ascii() -> None:
    # os.fsdecode turns undecodable bytes into lone surrogates; they are one character each
    name = "/\u00e9t\u00e9-\udcff.txt"
    assert compile_glob("/(?)*-(?).txt").captures(name) == [name, "\u00e9", "\udcff"]


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("/!(!(x))", "a !(...) group inside another !(...) group"),
        ("/" + "!(x)" * 9, "more than 8 !(...) groups"),
        ("/[]!(x)", "an empty class [] combined with !(...)"),
        ("/" + "{" * 2000, "groups nested too deeply"),
        ("/" + "a" * 4096, "longer than 4096 characters"),
    ],
)
def test_globs_re2_cannot_run_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(UnsupportedGlob, match=re.escape(f"unsupported glob {pattern!r}: {reason}")):
        compile_glob(pattern)


def test_a_glob_with_a_nul_byte_is_invalid() -> None:
    with pytest.raises(GlobError, match=re.escape("invalid glob '/a\\x00b': a glob cannot")):
        compile_glob("/a\x00b")


def test_a_path_with_a_nul_byte_matches_nothing() -> None:
    assert not compile_glob("/*").match("/a\x00b")
    assert compile_glob("/!(x)").captures("/a\x00b") is None
