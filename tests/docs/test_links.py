"""Every link in README.md, CONTRIBUTING.md and docs/ resolves: the file exists in the repository, and an
#anchor names a heading of that file (GitHub's slugs). Links to the web are not followed (no network here)."""
import glob
import os
import re
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def documents():
    paths = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "CONTRIBUTING.md")]
    paths += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    paths += sorted(glob.glob(os.path.join(ROOT, "Tests", "**", "*.md"), recursive=True))
    return paths


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if FENCE.match(line):
                fenced = not fenced
            elif not fenced and line.startswith("#"):
                found.add(slug(line.lstrip("#")))
    return found


def links(path):
    fenced = False
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if FENCE.match(line):
                fenced = not fenced
                continue
            if fenced:
                continue
            for m in LINK.finditer(line):
                yield number, m.group(1) or m.group(2)


class LinkTests(unittest.TestCase):
    def test_documents_exist(self):
        for name in ("architecture", "vmm", "datapath", "operations", "performance", "testing", "kernel-rules", "protocol"):
            self.assertTrue(os.path.exists(os.path.join(ROOT, "docs", name + ".md")), name)

    def test_every_link_resolves(self):
        problems = []
        for doc in documents():
            for number, target in links(doc):
                if re.match(r"^[a-z]+:", target):
                    continue  # http(s), mailto, file: not followed
                file_part, _, fragment = target.partition("#")
                resolved = os.path.normpath(os.path.join(os.path.dirname(doc), file_part)) if file_part else doc
                where = f"{os.path.relpath(doc, ROOT)}:{number}: {target}"
                if not resolved.startswith(ROOT + os.sep) and resolved != ROOT:
                    problems.append(f"{where} points outside the repository")
                elif not os.path.exists(resolved):
                    problems.append(f"{where} does not exist")
                elif fragment and resolved.endswith(".md") and fragment not in anchors(resolved):
                    problems.append(f"{where} names no heading of {os.path.relpath(resolved, ROOT)}")
        self.assertEqual(problems, [], "\n".join(problems))

    def test_readme_is_a_front_door(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertLessEqual(len(lines), 250)
        first_block = lines.index("```sh")
        self.assertEqual(lines[first_block + 1].split()[0], "scripts/run-daemon.sh")
        self.assertEqual(lines[first_block + 2].split()[0], "scripts/test.sh")
        self.assertEqual(lines[first_block + 3], "```")
        self.assertLess(first_block, 10, "the two set-up commands are on the first screen")


if __name__ == "__main__":
    unittest.main()
