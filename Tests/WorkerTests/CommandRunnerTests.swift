import Foundation
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// The command runner: a trainer in its own process group, its output line by line, its exit
/// classified, and nothing of it left running after a cancel.
@Suite(.timeLimit(.minutes(2))) struct CommandRunnerTests {
    typealias Support = RunnerTestSupport

    @Test func bothStreamsArriveLineByLineEachInOrder() async throws {
        let script = """
        i=1; while [ $i -le 500 ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); done
        printf 'crlf\\r\\n'; printf 'no newline at the end'
        """
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", script]))
        let collector = LineCollector(runner)
        let exit = await runner.wait()
        _ = await collector.finished()
        #expect(exit == .success)
        #expect(collector.texts(.stdout) == (1...500).map { "out \($0)" } + ["crlf", "no newline at the end"])
        #expect(collector.texts(.stderr) == (1...500).map { "err \($0)" })
    }

    @Test func aLineLongerThanTheLimitArrivesInPieces() async throws {
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "head -c 140000 /dev/zero | tr '\\0' a; echo; echo after"]))
        let lines = await LineCollector(runner).finished()
        _ = await runner.wait()
        let limit = OutputPipeReader.maximumLineBytes
        #expect(lines.map(\.text.count) == [limit, limit, 140_000 - 2 * limit, 5])
    }

    @Test func theEnvironmentIsTheWorkersThenTheJobsThenTheGPU() async throws {
        let dir = TrainerFixture.temporaryDirectory("runner-env")
        let spec = CommandSpec(argv: ["sh", "-c", "echo \"$KEPT $OVERRIDDEN $CUDA_VISIBLE_DEVICES\"; pwd -P"],
                               workingDirectory: dir,
                               environment: ["OVERRIDDEN": "job", "CUDA_VISIBLE_DEVICES": "7"],
                               cudaVisibleDevices: "3")
        let runner = try CommandRunner(spec, workerEnvironment: ["PATH": "/usr/bin:/bin", "KEPT": "worker", "OVERRIDDEN": "worker"])
        let collector = LineCollector(runner)
        #expect(await runner.wait() == .success)
        _ = await collector.finished()
        let real = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        #expect(collector.texts(.stdout) == ["worker job 3", real])
    }

    @Test func aNonZeroExitIsFailedWithItsCodeAndTheLastLines() async throws {
        let script = "for i in $(seq 1 30); do echo \"line $i\"; done; echo 'fatal: boom' >&2; exit 3"
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", script]), tailLines: 4)
        _ = LineCollector(runner)
        let exit = await runner.wait()
        #expect(exit == .failed(code: 3, lastLines: ["line 28", "line 29", "line 30", "fatal: boom"]))
        #expect(exit.summary == "exited with status 3")
    }

    @Test func cudaOutOfMemoryOnStderrIsOutOfMemory() async throws {
        let out = TrainerFixture.temporaryDirectory("runner-oom")
        let argv = try Support.trainerArgv(["--output-dir", out, "--batch-size", "16", "--oom-at-batch", "16"])
        let runner = try CommandRunner(CommandSpec(argv: argv))
        _ = LineCollector(runner)
        let exit = await runner.wait()
        guard case .outOfMemory(let line, let lastLines) = exit else {
            Issue.record("expected an out-of-memory exit, got \(exit)")
            return
        }
        #expect(line.hasPrefix("torch.OutOfMemoryError: CUDA out of memory."))
        #expect(line.contains("batch_size=16"))
        #expect(lastLines.last == line)
    }

    @Test func anOutOfMemoryTextOnStdoutOrInASuccessfulRunIsNotOutOfMemory() async throws {
        let failing = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "echo 'CUDA out of memory'; exit 1"]))
        _ = LineCollector(failing)
        #expect(await failing.wait() == .failed(code: 1, lastLines: ["CUDA out of memory"]))
        let recovered = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "echo 'CUDA out of memory, retrying' >&2; exit 0"]))
        _ = LineCollector(recovered)
        #expect(await recovered.wait() == .success)
    }

    @Test func aCommandEndedByASignalIsKilledWithThatSignal() async throws {
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "echo going; kill -9 $$"]))
        _ = LineCollector(runner)
        let exit = await runner.wait()
        #expect(exit == .killed(signal: SIGKILL, lastLines: ["going"]))
        #expect(exit.summary == "was killed by signal 9 (SIGKILL)")
    }

    @Test func aMissingProgramOrWorkingDirectoryIsAnErrorNamingIt() throws {
        let missing = #expect(throws: CommandRunnerError.self) {
            _ = try CommandRunner(CommandSpec(argv: ["no-such-trainer-xyz", "--flag"]))
        }
        #expect(missing?.program == "no-such-trainer-xyz")
        #expect(missing?.description.contains("not found in PATH") == true)
        let noDir = #expect(throws: CommandRunnerError.self) {
            _ = try CommandRunner(CommandSpec(argv: ["/bin/true"], workingDirectory: "/nonexistent/tts-workdir"))
        }
        #expect(noDir?.description.contains("the working directory /nonexistent/tts-workdir does not exist") == true)
        #expect(throws: CommandRunnerError.self) { _ = try CommandRunner(CommandSpec(argv: [])) }
    }

    @Test func theCommandRunsInItsOwnProcessGroup() async throws {
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "sleep 30"]))
        let collector = LineCollector(runner)
        let stat = try #require(ProcessStat.read(pid: runner.pid))
        #expect(stat.processGroup == runner.pid)
        #expect(stat.processGroup != getpgrp())
        runner.terminate(grace: .seconds(5))
        #expect(await runner.wait() == .killed(signal: SIGTERM, lastLines: []))
        _ = await collector.finished()
    }

    @Test func terminateKillsTheWholeProcessTree() async throws {
        let out = TrainerFixture.temporaryDirectory("runner-tree")
        let argv = try Support.trainerArgv(["--output-dir", out, "--spawn-children", "3", "--hang-at-step", "2"])
        let runner = try CommandRunner(CommandSpec(argv: argv))
        let collector = LineCollector(runner)
        try #require(await Support.eventually(within: 60) { collector.saw("hanging at step 2") },
                     "the fixture did not reach its hang: \(collector.lines.map(\.text))")
        let children = Support.childPids(in: out)
        try #require(children.count == 3)
        #expect(children.allSatisfy(Support.isRunning))
        #expect(Set(ProcessGroup.liveMembers(of: runner.pid)) == Set(children + [runner.pid]))

        runner.terminate(grace: .seconds(10))
        let exit = await runner.wait()
        #expect(exit == .killed(signal: SIGTERM, lastLines: exit.lastLines))
        let survivors = (children + [runner.pid]).filter(Support.isRunning)
        #expect(survivors.isEmpty, "still running after terminate: \(survivors)")
        #expect(ProcessGroup.liveMembers(of: runner.pid).isEmpty)
    }

    @Test func aTreeThatIgnoresSIGTERMIsKilledAfterTheGrace() async throws {
        let out = TrainerFixture.temporaryDirectory("runner-hang")
        // SIG_IGN survives exec: the trainer and the children it starts all ignore SIGTERM.
        let argv = try ["/bin/sh", "-c", "trap '' TERM; exec \"$@\"", "sh"]
            + Support.trainerArgv(["--output-dir", out, "--spawn-children", "2", "--hang-at-step", "3"])
        let runner = try CommandRunner(CommandSpec(argv: argv))
        let collector = LineCollector(runner)
        try #require(await Support.eventually(within: 60) { collector.saw("hanging at step 3") },
                     "the fixture did not reach its hang: \(collector.lines.map(\.text))")
        let children = Support.childPids(in: out)
        try #require(children.count == 2)

        let grace = Duration.milliseconds(1500)
        let started = ContinuousClock.now
        runner.terminate(grace: grace)
        try await Task.sleep(for: .milliseconds(700))
        #expect(Support.isRunning(runner.pid), "SIGTERM is ignored: the trainer runs until the grace has passed")
        let exit = await runner.wait()
        let elapsed = ContinuousClock.now - started
        #expect(exit == .killed(signal: SIGKILL, lastLines: exit.lastLines))
        #expect(elapsed >= grace)
        #expect(elapsed < grace + .seconds(8))
        let survivors = (children + [runner.pid]).filter(Support.isRunning)
        #expect(survivors.isEmpty, "still running after SIGKILL: \(survivors)")
    }

    @Test func processesLeftBehindByAFinishedCommandAreStopped() async throws {
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "sleep 300 & echo $!; exit 0"]),
                                       leftoverGrace: .seconds(2))
        let collector = LineCollector(runner)
        let started = ContinuousClock.now
        #expect(await runner.wait() == .success)
        #expect(ContinuousClock.now - started < .seconds(5))
        let orphan = try #require(collector.texts(.stdout).first.flatMap { Int32($0) })
        #expect(!Support.isRunning(orphan))
    }

    @Test func waitStatusesAreClassified() {
        #expect(CommandExit.classify(waitStatus: 0, outOfMemoryLine: nil, lastLines: ["x"]) == .success)
        #expect(CommandExit.classify(waitStatus: 0, outOfMemoryLine: "CUDA out of memory", lastLines: []) == .success)
        #expect(CommandExit.classify(waitStatus: 3 << 8, outOfMemoryLine: nil, lastLines: ["x"]) == .failed(code: 3, lastLines: ["x"]))
        #expect(CommandExit.classify(waitStatus: 1 << 8, outOfMemoryLine: "oom", lastLines: []) == .outOfMemory(line: "oom", lastLines: []))
        #expect(CommandExit.classify(waitStatus: SIGKILL, outOfMemoryLine: nil, lastLines: []) == .killed(signal: SIGKILL, lastLines: []))
        #expect(CommandExit.classify(waitStatus: SIGSEGV | 0x80, outOfMemoryLine: nil, lastLines: []) == .killed(signal: SIGSEGV, lastLines: []))
    }

    @Test func procStatIsParsedAfterTheLastParenthesis() {
        let stat = ProcessStat.parse("4242 (python3 (x) y) S 17 4242 4242 0 -1 4194304")
        #expect(stat == ProcessStat(state: "S", parent: 17, processGroup: 4242))
        #expect(ProcessStat.parse("7 (sleep) Z 1 7 7")?.isRunning == false)
        #expect(ProcessStat.parse("garbage") == nil)
    }
}

/// A trainer's group dies with its worker, even when the worker is killed with SIGKILL.
@Suite(.timeLimit(.minutes(1))) struct ProcessGroupGuardTests {
    typealias Support = RunnerTestSupport

    @Test("when the worker's end of the lifeline closes (its death), the guard kills the whole group")
    func groupDiesWithTheWorker() async throws {
        // A group of three: the leader and two children, all sleeping.
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "sleep 300 & sleep 300 & echo started; wait"]))
        let collector = LineCollector(runner)
        #expect(runner.diesWithWorker)
        #expect(await Support.eventually(within: 5) { ProcessGroup.liveMembers(of: runner.pid).count == 3 })
        let members = ProcessGroup.liveMembers(of: runner.pid)
        // A second guard for the same group stands in for the worker dying: its lifeline closes.
        let guardian = try #require(ProcessGroupGuard(group: runner.group))
        #expect(Support.isRunning(guardian.pid))
        guardian.closeLifeline()
        #expect(await Support.eventually(within: 5) { members.allSatisfy { !Support.isRunning($0) } }, "every member of the group is gone")
        #expect(await runner.wait() == .killed(signal: SIGKILL, lastLines: ["started"]))
        _ = await collector.finished()
        var status: Int32 = 0
        _ = waitpid(guardian.pid, &status, 0)
    }

    @Test("on a normal exit the guard is dismissed and signals nothing")
    func normalExitDismissesTheGuard() async throws {
        let runner = try CommandRunner(CommandSpec(argv: ["/bin/sh", "-c", "echo done"]))
        _ = LineCollector(runner)
        #expect(await runner.wait() == .success)
        let guards = ProcessGroup.liveMembers(of: runner.pid)
        #expect(guards.isEmpty)
        // No `tts-group-guard` of this runner is left: look for one naming its group.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap(Int32.init).filter { pid in
            let cmd = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            return cmd.contains("tts-group-guard\u{0}\(runner.pid)")
        }
        #expect(leftovers.isEmpty, "guards left running: \(leftovers)")
    }
}
