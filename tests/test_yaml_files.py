"""The YAML people write, read by one reader (core/yaml_files.py)."""

import pytest

from core.yaml_files import YamlFileError, read_yaml


def _read(tmp_path, text, encoding="utf-8"):
    path = tmp_path / "f.yaml"
    path.write_bytes(text.encode(encoding))
    return read_yaml(path)


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    with pytest.raises(YamlFileError, match=r"key 'c' given twice \(lines 3 and 4\)"):
        _read(tmp_path, "a: 1\nb:\n  c: 2\n  c: 3\n")


def test_what_yaml_allows_is_read_as_it_was(tmp_path):
    # a merge key's values overridden, equal values in a list, keys of other types
    text = "base: &b {z: 1}\nover: {<<: *b, z: 2}\nlist: [1, 1]\n1: one\n'1': text\n"
    assert _read(tmp_path, text) == {
        "base": {"z": 1}, "over": {"z": 2}, "list": [1, 1], 1: "one", "1": "text"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "encoding", "said"),
    [
        ("? [a, b]\n: 1\n", "utf-8", "invalid YAML: while constructing a mapping"),
        ("a: [1\n", "utf-8", "invalid YAML"),
        ("名字: 生日\n", "gb18030", "cannot read as UTF-8 text"),
    ],
)
def test_what_cannot_be_read_says_why(tmp_path, text, encoding, said):
    with pytest.raises(YamlFileError, match=said):
        _read(tmp_path, text, encoding)
