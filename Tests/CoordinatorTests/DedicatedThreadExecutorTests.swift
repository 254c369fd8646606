import Foundation
import Testing
@testable import Coordinator

/// An actor on a ``DedicatedThreadExecutor`` runs on that thread, in order, and is released.
@Suite("Dedicated thread executor")
struct DedicatedThreadExecutorTests {
    actor Recorder {
        private let executor: DedicatedThreadExecutor
        nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
        private(set) var seen: [Int] = []
        private(set) var threads: Set<String> = []

        init(name: String) { executor = DedicatedThreadExecutor(name: name) }

        /// The running OS thread's name (as `top -H` shows it).
        nonisolated static func threadName() -> String {
            ((try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? "?").trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func record(_ i: Int) async {
            threads.insert(Self.threadName())
            seen.append(i)
            // Suspends: the rest must come back to the same thread.
            try? await Task.sleep(for: .milliseconds(1))
            threads.insert(Self.threadName())
        }
    }

    @Test("every job of the actor runs on the executor's own named thread, before and after a suspension")
    func runsOnItsThread() async {
        let r = Recorder(name: "test-dedicated")
        for i in 0..<20 { await r.record(i) }
        let threads = await r.threads
        #expect(threads == ["test-dedicated"], "\(threads)")
        #expect(await r.seen == Array(0..<20))
    }

    @Test("calls from many tasks are all served; blocking the thread blocks no cooperative thread")
    func manyCallers() async {
        let r = Recorder(name: "test-dedicated-2")
        await withTaskGroup(of: Void.self) { g in
            for i in 0..<200 { g.addTask { await r.record(i) } }
        }
        #expect(await r.seen.sorted() == Array(0..<200))
    }

    @Test("the executor is released with its actor (its thread holds no reference to it)")
    func released() async {
        weak var weakExecutor: DedicatedThreadExecutor?
        do {
            let e = DedicatedThreadExecutor(name: "test-dedicated-3")
            weakExecutor = e
            _ = e.asUnownedSerialExecutor()
        }
        #expect(weakExecutor == nil)
    }
}
