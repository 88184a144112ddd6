"""`vdpad-bench datapath` end to end (issue 21's benchmark): its C VMM-side
driver (preload/dpdriver.c) under the preload library against the built
vdpad, every workload through both memories and against the in-process
reference, in interleaved rounds whose medians and spreads it prints.

The figures of a debug build in a fraction of a second say nothing about
speed (docs/performance.md has the release figures and their command);
what is checked here is that every run moves data and that the summary is
what the help says: medians, each ratio taken within its round, the spread
around them, and the goals judged on those medians.  `vdpad-bench copy
--disk`, the sequential read's copy alone (the memory's limit), is run here
too.  Needs the debug build and the preload library next to it
(scripts/test.sh: make -C preload OUT=.build/debug).
"""
import json
import os
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PRODUCTS = os.environ.get("VDPAD_PRODUCTS", os.path.join(ROOT, ".build", "debug"))
BENCH = os.path.join(PRODUCTS, "vdpad-bench")
WORKLOADS = {"net64": 64, "net1500": 1500, "blk-randread4k": 4096, "blk-randwrite4k": 4096, "blk-seqread64k": 65536}


def bench(*args):
    return subprocess.run([BENCH, "datapath", *args], capture_output=True, text=True, timeout=300)


class DataPathBenchTests(unittest.TestCase):
    def test_every_workload_moves_data_and_the_summary_is_medians_of_rounds(self):
        done = bench("--seconds", "0.2", "--rounds", "3", "--json", "--goals")
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertEqual(len(lines), 2 * len(WORKLOADS) + 3, done.stderr)
        lines, goals = lines[:-3], lines[-3:]
        # The goals are judged on the medians of the shared lines; the exit status says whether all were met.
        shared = [line for line in lines if line["memory"] == "shared"]
        lowest_ratio = min(shared, key=lambda line: line["ratio"])
        net64 = next(line for line in shared if line["workload"] == "net64")
        lowest_speedup = min(shared, key=lambda line: line["over_process_vm"])
        self.assertEqual(goals, [
            {"goal": "shared memory at ≥ 0.5× the reference in every workload", "met": lowest_ratio["ratio"] >= 0.5,
             "lowest": lowest_ratio["ratio"], "workload": lowest_ratio["workload"]},
            {"goal": "≥ 1 M frames/s for 64 B loopback", "met": net64["ops_per_s"] >= 1e6, "lowest": net64["ops_per_s"],
             "workload": "net64"},
            {"goal": "≥ 10× the process_vm fallback in every workload", "met": lowest_speedup["over_process_vm"] >= 10,
             "lowest": lowest_speedup["over_process_vm"], "workload": lowest_speedup["workload"]},
        ])
        self.assertEqual(done.returncode, 0 if all(goal["met"] for goal in goals) else 1, done.stderr)
        self.assertEqual([(line["workload"], line["memory"]) for line in lines],
                         [(w, m) for w in WORKLOADS for m in ("shared", "process_vm")])
        for line in lines:
            with self.subTest(workload=line["workload"], memory=line["memory"]):
                self.assertEqual(line["rounds"], 3)
                self.assertGreater(line["ops_per_s"], 0)
                self.assertGreater(line["reference_ops_per_s"], 0)
                # Bytes are ops times the workload's size, round by round, so their medians agree too — up to the
                # integer the rates are printed as: ops_per_s is up to 1 under its exact value, so the quotient is
                # up to size / ops_per_s over the size (5.7 at 11.5 k reads of 64 KiB a second).
                size = WORKLOADS[line["workload"]]
                self.assertAlmostEqual(line["bytes_per_s"] / line["ops_per_s"], size, delta=size / line["ops_per_s"] + 1)
                # Each figure is the median of its three rounds; each ratio is taken within its round.
                self.assertEqual(len(line["ops_per_s_rounds"]), 3)
                self.assertEqual(line["ops_per_s"], sorted(line["ops_per_s_rounds"])[1])
                self.assertEqual(line["reference_ops_per_s"], sorted(line["reference_ops_per_s_rounds"])[1])
                for ratio, ops, reference in zip(line["ratio_rounds"], line["ops_per_s_rounds"], line["reference_ops_per_s_rounds"]):
                    self.assertAlmostEqual(ratio, ops / reference, delta=0.0001 + ratio * 0.001)
                self.assertEqual(line["ratio"], sorted(line["ratio_rounds"])[1])
                self.assertEqual((line["ratio_min"], line["ratio_max"]), (min(line["ratio_rounds"]), max(line["ratio_rounds"])))
                self.assertGreater(line["ratio_min"], 0)
                if line["memory"] == "shared":
                    self.assertLessEqual(line["over_process_vm_min"], line["over_process_vm"])
                    self.assertLessEqual(line["over_process_vm"], line["over_process_vm_max"])
                else:
                    self.assertNotIn("over_process_vm", line)

    def test_the_table_says_what_it_is(self):
        done = bench("--seconds", "0.2", "--rounds", "2", "--workloads", "net64")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertIn("×reference (min–max)", lines[0])
        self.assertEqual([line.split()[:2] for line in lines[1:3]], [["net64", "shared"], ["net64", "process_vm"]])
        self.assertIn("medians of 2 interleaved rounds", lines[-1])

    def test_a_goal_no_workload_run_applies_to_is_not_judged(self):
        done = bench("--seconds", "0.2", "--rounds", "1", "--workloads", "blk-randwrite4k", "--goals")
        verdicts = [line for line in done.stdout.splitlines() if line.startswith("goal: ")]
        self.assertEqual(len(verdicts), 3, done.stdout)
        self.assertEqual(verdicts[1], "goal: ≥ 1 M frames/s for 64 B loopback: not measured (no workload it applies to was run)")
        for verdict in (verdicts[0], verdicts[2]):
            self.assertRegex(verdict, r": (met|NOT met), lowest [0-9.]+× in blk-randwrite4k$")
        self.assertEqual(done.returncode, 1 if any("NOT met" in verdict for verdict in verdicts) else 0)

    def test_the_sequential_reads_copy_alone(self):
        done = subprocess.run([BENCH, "copy", "--disk", "--seconds", "0.1"], capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = [dict(field.split("=") for field in line.split()[3:]) for line in done.stdout.splitlines()]
        self.assertEqual([(line["round"], line["copy"]) for line in lines],
                         [(str(r), copy) for r in (1, 2, 3) for copy in ("guarded", "memcpy")])
        for line in lines:
            self.assertGreater(int(line["pieces_per_s"]), 0)
            self.assertEqual(int(line["bytes_per_s"]), int(line["pieces_per_s"]) * 65536)

    def test_bad_options_are_refused_with_the_reason(self):
        for args, reason in ((["--rounds", "0"], "--rounds must be in"), (["--workloads", "net65"], "unknown workload net65"),
                             (["--seconds", "0"], "--seconds must be in")):
            with self.subTest(args=args):
                done = bench(*args)
                self.assertNotEqual(done.returncode, 0)
                self.assertIn(reason, done.stderr)
                self.assertEqual(done.stdout, "")
        done = subprocess.run([BENCH, "copy", "--seconds", "1"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("--seconds times --disk's rounds", done.stderr)


if __name__ == "__main__":
    unittest.main()
