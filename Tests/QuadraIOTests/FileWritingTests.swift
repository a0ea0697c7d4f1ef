import Foundation
import Testing

@testable import QuadraIO

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

func directoryEntries(_ url: URL) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
}

@Suite(.serialized) struct AtomicFileTests {
  @Test func createsAndReplaces() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("result.json")
    try AtomicFile.write(Data("first".utf8), to: url)
    #expect(try Data(contentsOf: url) == Data("first".utf8))
    try AtomicFile.write("second, longer", to: url)
    #expect(try String(contentsOf: url, encoding: .utf8) == "second, longer")
    #expect(try directoryEntries(directory) == ["result.json"])  // no temporary files left
  }

  @Test func keepsPermissionsOfReplacedFile() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("script.sh")
    try AtomicFile.write("a", to: url)
    try FileManager.default.setAttributes([.posixPermissions: 0o750], ofItemAtPath: url.path)
    try AtomicFile.write("b", to: url)
    let mode = try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? Int
    #expect(mode == 0o750)
  }

  @Test func missingDirectoryFailsWithoutSideEffects() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("missing/result.json")
    let error = thrownError { try AtomicFile.write(Data("x".utf8), to: url) }
    let writeError = try #require(error as? FileWriteError)
    #expect(writeError.path == url.path && writeError.description.contains("No such file or directory"))
    #expect(try directoryEntries(directory).isEmpty)
  }

  @Test func failedRenameLeavesTargetAndNoTemporary() throws {
    // The target is a non-empty directory, so the final rename fails after the data was written.
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let target = directory.appendingPathComponent("checkpoint")
    try FileManager.default.createDirectory(at: target, withIntermediateDirectories: false)
    try Data("keep".utf8).write(to: target.appendingPathComponent("inner"))
    #expect(throws: FileWriteError.self) { try AtomicFile.write(Data(count: 1000), to: target) }
    #expect(try directoryEntries(directory) == ["checkpoint"])
    #expect(try Data(contentsOf: target.appendingPathComponent("inner")) == Data("keep".utf8))
  }

  @Test func failedWriteLeavesOldFileIntact() throws {
    // A file-size limit makes write(2) fail with EFBIG halfway through a 4 MiB write.
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("model.safetensors")
    let old = Data("old checkpoint".utf8)
    try AtomicFile.write(old, to: url)

    var saved = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
    let previousHandler = signal(SIGXFSZ, SIG_IGN)  // otherwise exceeding the limit kills the process
    var limited = saved
    limited.rlim_cur = 1 << 20
    #expect(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limited) == 0)
    let error = thrownError { try AtomicFile.write(Data(count: 4 << 20), to: url) }
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved)
    signal(SIGXFSZ, previousHandler)

    let writeError = try #require(error as? FileWriteError)
    #expect(writeError.operation.hasPrefix("writing"))
    #expect(try Data(contentsOf: url) == old)
    #expect(try directoryEntries(directory) == ["model.safetensors"])
  }
}

struct EpochRecord: Codable, Equatable {
  var epoch: Int
  var loss: Double
  var accuracy: Double
  var note: String?
}

@Suite struct JSONLinesTests {
  @Test func appendsOneRecordPerLine() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("metrics.jsonl")
    let records = [
      EpochRecord(epoch: 1, loss: 2.25, accuracy: 0.5, note: "line\nbreak"),
      EpochRecord(epoch: 2, loss: .nan, accuracy: 0.75, note: nil),
      EpochRecord(epoch: 3, loss: .infinity, accuracy: 0.875, note: "a/b"),
    ]
    let writer = try JSONLinesWriter(url: url, mode: .truncate)
    for record in records.prefix(2) { try writer.append(record) }
    try writer.close()
    // Reopening appends after the existing lines.
    let resumed = try JSONLinesWriter(url: url)
    try resumed.append(records[2])
    try resumed.close()

    let text = try String(contentsOf: url, encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(lines.count == 4 && lines.last == "")
    #expect(lines[0] == #"{"accuracy":0.5,"epoch":1,"loss":2.25,"note":"line\nbreak"}"#)
    #expect(lines[2].contains(#""note":"a/b""#))
    for line in lines.dropLast() { #expect(try JSONSerialization.jsonObject(with: Data(line.utf8)) is [String: Any]) }

    let read = try JSONLinesWriter.read(EpochRecord.self, from: url)
    #expect(read.count == 3)
    #expect(read[0] == records[0] && read[2] == records[2])
    #expect(read[1].loss.isNaN && read[1].accuracy == 0.75)

    let fresh = try JSONLinesWriter(url: url, mode: .truncate)
    try fresh.append(records[0])
    try fresh.close()
    #expect(try JSONLinesWriter.read(EpochRecord.self, from: url) == [records[0]])
  }

  @Test func missingDirectoryIsAnError() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    #expect(throws: FileWriteError.self) {
      _ = try JSONLinesWriter(url: directory.appendingPathComponent("no/such.jsonl"))
    }
  }
}

@Suite struct DurableFileSystemTests {
  final class Recorder: @unchecked Sendable {
    let lock = NSLock()
    var operations: [FileOperation] = []
  }

  @Test func everyStepPassesTheHookAndAFailureStopsWithoutCleanup() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let recorder = Recorder()
    let data = Data((0..<100).map { UInt8($0) })
    let file = directory.appendingPathComponent("f")
    let recording = DurableFileSystem { operation in recorder.lock.withLock { recorder.operations.append(operation) } }
    try recording.writeNewFile(data, to: file)
    #expect(recorder.operations == [.createFile(file.path), .write(file.path, range: 0..<50), .write(file.path, range: 50..<100), .syncFile(file.path)])
    #expect(try Data(contentsOf: file) == data)

    // A failure before the second half leaves the torn file as a crash would: nothing is cleaned up.
    struct Crash: Error {}
    let torn = directory.appendingPathComponent("torn")
    let crashing = DurableFileSystem { operation in
      if case .write(_, let range) = operation, range.lowerBound > 0 { throw Crash() }
    }
    #expect(throws: Crash.self) { try crashing.writeNewFile(data, to: torn) }
    #expect(try Data(contentsOf: torn) == data.prefix(50))
    // Existing files are never overwritten by writeNewFile.
    let exists = thrownError { try recording.writeNewFile(data, to: torn) }
    #expect("\(exists!)".contains("File exists"))
  }

  @Test func foundationErrorsBecomePathAndReason() throws {
    let missing = "/nonexistent-\(UUID().uuidString)/x"
    do {
      _ = try FileManager.default.contentsOfDirectory(atPath: missing)
      Issue.record("listing a missing directory succeeded")
    } catch {
      let mapped = try #require(FileWriteError(foundationError: error, path: "fallback", operation: "listing"))
      #expect(mapped.description.hasPrefix(missing) && mapped.reason == "No such file or directory")
    }
    #expect(FileWriteError(foundationError: FileWriteError(path: "p", operation: "o", reason: "r"), path: "p", operation: "o") == nil)
  }
}
