import Foundation

/// A serial executor that runs its jobs on one thread of its own, off Swift's cooperative pool.
///
/// The consumers that read and write the store synchronously (GRDB with `synchronous = FULL`:
/// fsyncs, and reads of many batches) are actors whose `unownedExecutor` is one of these, so
/// their blocking database work never occupies a cooperative thread that the NNG server, the
/// HTTP server and the other services need. Jobs run in the order they were enqueued; when an
/// actor method awaits, its continuation comes back to this same thread.
///
/// The thread ends when the executor is released (after its last job).
public final class DedicatedThreadExecutor: SerialExecutor, Sendable {
    /// The queue shared by the executor and its thread. The thread holds only this, not the
    /// executor, so releasing the executor ends the thread.
    private final class Queue: Sendable {
        let condition = NSCondition()
        // Guarded by `condition` (every access below locks it first): `nonisolated(unsafe)`
        // because the compiler cannot see the lock.
        nonisolated(unsafe) var jobs: [UnownedJob] = []
        nonisolated(unsafe) var closed = false
        /// The executor the jobs run on (unowned: the thread must not keep it alive).
        nonisolated(unsafe) var owner: UnownedSerialExecutor?
    }

    private let queue = Queue()

    /// - Parameter name: the thread's name (shown by `top -H`, `perf`, debuggers).
    public init(name: String) {
        let queue = self.queue
        let threadName = String(decoding: name.utf8.prefix(15), as: UTF8.self) // Linux: 15 bytes at most
        let thread = Thread { [queue] in
            Thread.current.name = threadName // on the thread itself: Foundation then names the OS thread too
            while true {
                queue.condition.lock()
                while queue.jobs.isEmpty && !queue.closed { queue.condition.wait() }
                if queue.jobs.isEmpty && queue.closed {
                    queue.condition.unlock()
                    return
                }
                let batch = queue.jobs
                queue.jobs.removeAll(keepingCapacity: true)
                let executor = queue.owner!
                queue.condition.unlock()
                for job in batch { job.runSynchronously(on: executor) }
            }
        }
        thread.name = name
        // Set before the thread can run a job.
        queue.condition.lock()
        queue.owner = UnownedSerialExecutor(ordinary: self)
        queue.condition.unlock()
        thread.start()
    }

    deinit {
        queue.condition.lock()
        queue.closed = true
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        queue.condition.lock()
        queue.jobs.append(unowned)
        queue.condition.signal()
        queue.condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }
}
