import Foundation
import QuadraIO

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Why a run directory cannot be used.
public enum RunDirectoryError: Error, CustomStringConvertible, LocalizedError {
  /// The path exists and is not a directory.
  case notADirectory(path: String)
  /// The directory cannot be created, locked or written (read-only, no permission, …).
  case notWritable(path: String, reason: String)
  /// Another process holds the directory's lock (it is training into it).
  case inUse(path: String, pid: Int32?)
  /// The directory holds a checkpoint of another run, and neither `--resume` nor `--overwrite` was given.
  case occupied(path: String, holding: String)

  public var description: String {
    switch self {
    case .notADirectory(let path):
      return "\(path): not a directory (the output directory must be a directory or not exist yet)"
    case .notWritable(let path, let reason):
      return "\(path): cannot write the run directory: \(reason)"
    case .inUse(let path, let pid):
      let holder = pid.map { "process \($0)" } ?? "another process"
      return "\(path): in use by \(holder), which is training into it (lock \(RunDirectory.lockFileName)); "
        + "wait for it to finish or choose another --out"
    case .occupied(let path, let holding):
      return "\(path) holds \(holding); continue it with --resume \(path), or start a new run over it with "
        + "--overwrite (the old checkpoint stays until the new run's first checkpoint is complete), or choose another --out"
    }
  }

  public var errorDescription: String? { description }
}

/// A run's output directory, locked for one training process, with crash-safe checkpoint pairs.
///
/// Layout:
/// ```
/// model.safetensors            the weights of the newest checkpoint (PyTorch state dict)
/// training_state.safetensors   its optimizer moments and training state (for --resume)
/// model_ema.safetensors        its EMA weights, when EMA is on
/// checkpoints/000007-epoch-7/  the newest complete pair (the files above are hard links to it)
/// .quadranet.lock              flock'ed by the training process (holds its pid)
/// ```
/// A save writes the new pair into `checkpoints/.partial-…`, flushes the files and the folder, then
/// renames it to `checkpoints/<sequence>-epoch-<N>` and flushes `checkpoints/`: that rename is the
/// commit. Only then are the top-level files replaced (each by an atomic rename) and older saves removed.
/// A crash at any step leaves either the previous or the new complete pair as the newest save, which is
/// what ``TrainingCheckpoint/read(from:)`` resumes from; the next ``init(url:fileSystem:)`` removes
/// leftovers and re-publishes the top-level files from the newest save. Sequence numbers (not epochs)
/// order the saves, so a run started with `--overwrite` supersedes an older run's later epochs.
/// Directories written before this layout (top-level files only) are still read.
public final class RunDirectory {
  public let url: URL
  /// The file operations of saves (replaceable, e.g. by a fault-injecting one in tests).
  public var fileSystem: DurableFileSystem
  private var lockDescriptor: Int32

  public static let lockFileName = ".quadranet.lock"
  public static let checkpointsFolder = "checkpoints"
  static let partialPrefix = ".partial-"
  static let probePrefix = ".write-probe-"
  /// The files of a checkpoint pair, in the order they are published at top level.
  static let pairFiles = [CheckpointFiles.weights, CheckpointFiles.emaWeights, CheckpointFiles.trainingState]

  /// A committed save: `checkpoints/<sequence>-epoch-<epoch>`.
  public struct Save: Sendable, Equatable {
    public var sequence: Int
    public var epoch: Int
    public var url: URL
  }

  /// Creates the directory if needed, takes its lock, checks that it is writable (by writing and
  /// removing a probe file) and recovers from an interrupted save: temporary files and partial saves
  /// are removed, the top-level files are re-published from the newest save, older saves are removed.
  ///
  /// All of this happens before any data is loaded or any epoch trained, so a bad `--out` fails at once.
  public init(url: URL, fileSystem: DurableFileSystem = DurableFileSystem()) throws {
    self.url = url.standardizedFileURL
    self.fileSystem = fileSystem
    lockDescriptor = -1
    let path = self.url.path
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
      throw RunDirectoryError.notADirectory(path: path)
    }
    try Self.createDirectories(self.url)
    try lock()
    do {
      try probeWritability()
      try recover()
    } catch {
      unlock()
      throw error
    }
  }

  deinit { unlock() }

  /// `mkdir -p` with the system's reason for the first component that fails (Foundation reports some
  /// of these, e.g. a file in the way, only as an unexplained error code).
  static func createDirectories(_ url: URL) throws {
    var path = ""
    for component in url.pathComponents {
      path = component == "/" ? "/" : (path.hasSuffix("/") ? path : path + "/") + component
      if mkdir(path, 0o755) == 0 { continue }
      let code = errno
      var isDirectory: ObjCBool = false
      if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        if isDirectory.boolValue { continue }
        throw RunDirectoryError.notWritable(path: url.path, reason: "\(path) is a file, not a directory")
      }
      throw RunDirectoryError.notWritable(path: url.path, reason: "cannot create \(path): \(String(cString: strerror(code)))")
    }
  }

  /// Releases the lock (also released by the kernel when the process dies, even by `kill -9`).
  public func unlock() {
    guard lockDescriptor >= 0 else { return }
    _ = flock(lockDescriptor, LOCK_UN)
    close(lockDescriptor)
    lockDescriptor = -1
  }

  private func lock() throws {
    let lockPath = url.appendingPathComponent(Self.lockFileName).path
    let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw RunDirectoryError.notWritable(path: url.path, reason: "cannot create \(Self.lockFileName): \(String(cString: strerror(errno)))")
    }
    // flock (not fcntl) locks belong to the open file description, so two Trainers in one process
    // exclude each other too; the kernel drops the lock when the descriptor's process dies.
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      let code = errno
      var buffer = [UInt8](repeating: 0, count: 32)
      let count = pread(fd, &buffer, buffer.count, 0)
      close(fd)
      guard code == EWOULDBLOCK else {
        throw RunDirectoryError.notWritable(path: url.path, reason: "cannot lock \(Self.lockFileName): \(String(cString: strerror(code)))")
      }
      let text = String(decoding: buffer.prefix(Swift.max(count, 0)), as: UTF8.self)
      throw RunDirectoryError.inUse(path: url.path, pid: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
    lockDescriptor = fd
    let pid = Array("\(getpid())\n".utf8)
    guard ftruncate(fd, 0) == 0, pwrite(fd, pid, pid.count, 0) == pid.count else {
      let reason = String(cString: strerror(errno))
      unlock()
      throw RunDirectoryError.notWritable(path: url.path, reason: "cannot write \(Self.lockFileName): \(reason)")
    }
  }

  /// Writes, flushes and removes a small file, so a read-only or full directory fails now, not after an epoch.
  private func probeWritability() throws {
    let probe = url.appendingPathComponent("\(Self.probePrefix)\(getpid())").path
    let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw RunDirectoryError.notWritable(path: url.path, reason: String(cString: strerror(errno)))
    }
    let byte: [UInt8] = [0x0A]
    let ok = write(fd, byte, 1) == 1 && fsync(fd) == 0
    let reason = String(cString: strerror(errno))
    close(fd)
    unlink(probe)
    guard ok else { throw RunDirectoryError.notWritable(path: url.path, reason: reason) }
  }

  // MARK: Reading

  /// Committed saves of the run directory at `runURL`, oldest first.
  public static func committedSaves(in runURL: URL) -> [Save] {
    let folder = runURL.appendingPathComponent(checkpointsFolder)
    let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
    return names.compactMap { name -> Save? in
      let parts = name.split(separator: "-", omittingEmptySubsequences: false)
      guard parts.count == 3, parts[1] == "epoch", let sequence = Int(parts[0]), let epoch = Int(parts[2]),
        sequence >= 0, epoch >= 0
      else { return nil }
      return Save(sequence: sequence, epoch: epoch, url: folder.appendingPathComponent(name))
    }.sorted { $0.sequence < $1.sequence }
  }

  static func saveName(sequence: Int, epoch: Int) -> String {
    let digits = String(sequence)
    return String(repeating: "0", count: Swift.max(0, 6 - digits.count)) + digits + "-epoch-\(epoch)"
  }

  /// The run directory a `--resume` path means: the directory itself, the folder of a weights file,
  /// or the run above a `checkpoints/<save>/` folder.
  public static func runURL(forResumePath path: URL) -> URL {
    var isDirectory: ObjCBool = false
    let exists = FileManager.default.fileExists(atPath: path.path, isDirectory: &isDirectory)
    let folder = exists && isDirectory.boolValue ? path : path.deletingLastPathComponent()
    let parent = folder.deletingLastPathComponent()
    if parent.lastPathComponent == checkpointsFolder,
      committedSaves(in: parent.deletingLastPathComponent()).contains(where: { $0.url.lastPathComponent == folder.lastPathComponent })
    {
      return parent.deletingLastPathComponent()
    }
    return folder
  }

  /// The weights file of the pair to resume from: the newest committed save's when the directory has
  /// one, otherwise the path itself (or `model.safetensors` in it), as written before saves existed.
  static func resumeWeightsURL(for path: URL) -> URL {
    let weights = CheckpointFiles.weightsURL(for: path)
    let folder = weights.deletingLastPathComponent()
    if let newest = committedSaves(in: folder).last {
      return newest.url.appendingPathComponent(CheckpointFiles.weights)
    }
    return weights
  }

  /// What the directory holds, for deciding whether a run may write into it.
  public enum Contents {
    case empty
    case checkpoint(TrainingCheckpoint)
    /// Checkpoint files that cannot be resumed (e.g. a pair torn by a crash of an older version).
    case unresumable(reason: String)
  }

  public func contents() -> Contents {
    let manager = FileManager.default
    let hasFiles = Self.committedSaves(in: url).isEmpty == false
      || manager.fileExists(atPath: url.appendingPathComponent(CheckpointFiles.weights).path)
      || manager.fileExists(atPath: url.appendingPathComponent(CheckpointFiles.trainingState).path)
    guard hasFiles else { return .empty }
    do {
      return .checkpoint(try TrainingCheckpoint.read(from: url))
    } catch {
      return .unresumable(reason: "\(error)")
    }
  }

  /// How a run relates to what the directory held when it started.
  public enum Claim: Equatable {
    /// Nothing was there.
    case empty
    /// The directory holds this run's own earlier checkpoint (its history is a prefix of the run's).
    case continuing(epoch: Int)
    /// `overwrite`: another run's files, replaced once this run's first checkpoint is complete.
    case replacing(String)
  }

  /// Checks that a run whose completed epochs are `history` (empty for a new run) may write here: the
  /// directory must be empty, hold this run's own earlier checkpoint, or `overwrite` must be given.
  @discardableResult
  public func claim(history: [EpochMetrics], overwrite: Bool) throws -> Claim {
    let holding: String
    switch contents() {
    case .empty:
      return .empty
    case .checkpoint(let existing):
      let saved = existing.state.history
      if !saved.isEmpty, saved.count <= history.count, Array(history.prefix(saved.count)) == saved {
        return .continuing(epoch: existing.state.epoch)
      }
      holding = "a checkpoint of another run (\(existing.state.model) on \(existing.state.dataset), epoch "
        + "\(existing.state.epoch) of \(existing.state.options.epochs))"
    case .unresumable(let reason):
      holding = "checkpoint files that cannot be resumed (\(reason))"
    }
    guard overwrite else { throw RunDirectoryError.occupied(path: url.path, holding: holding) }
    return .replacing(holding)
  }

  /// The epoch of the newest complete checkpoint, if any can be resumed.
  public func newestResumableEpoch() -> Int? {
    if case .checkpoint(let checkpoint) = contents() { return checkpoint.state.epoch }
    return nil
  }

  // MARK: Writing

  /// Saves `checkpoint` as a new pair, crash-safely (see the type's documentation), and returns the save.
  @discardableResult
  public func save(_ checkpoint: TrainingCheckpoint) throws -> Save {
    guard lockDescriptor >= 0 else {
      throw RunDirectoryError.notWritable(path: url.path, reason: "its lock was released (unlock()); open it again to save")
    }
    let files = try checkpoint.encodedFiles()
    let folder = url.appendingPathComponent(Self.checkpointsFolder)
    if !FileManager.default.fileExists(atPath: folder.path) {
      try fileSystem.createDirectory(folder)
      try fileSystem.syncDirectory(url)
    }
    let older = Self.committedSaves(in: url)
    let sequence = (older.last?.sequence ?? 0) + 1
    let partial = folder.appendingPathComponent("\(Self.partialPrefix)\(sequence)-\(getpid())")
    try fileSystem.createDirectory(partial)
    for (name, data) in files { try fileSystem.writeNewFile(data, to: partial.appendingPathComponent(name)) }
    try fileSystem.syncDirectory(partial)
    let save = Save(
      sequence: sequence, epoch: checkpoint.state.epoch,
      url: folder.appendingPathComponent(Self.saveName(sequence: sequence, epoch: checkpoint.state.epoch)))
    try fileSystem.rename(partial, to: save.url)
    try fileSystem.syncDirectory(folder)  // The commit: from here on this pair is the one resumed.
    try publish(save, files: files)
    for old in older { try fileSystem.removeDirectory(old.url) }
    if !older.isEmpty { try fileSystem.syncDirectory(folder) }
    return save
  }

  /// Makes the top-level files those of `save`: each is replaced by an atomic rename of a hard link
  /// (a copy where the file system has no hard links); a top-level file the save lacks is removed.
  private func publish(_ save: Save, files: [(name: String, data: Data)]?) throws {
    let manager = FileManager.default
    for name in Self.pairFiles {
      let target = url.appendingPathComponent(name)
      let source = save.url.appendingPathComponent(name)
      guard manager.fileExists(atPath: source.path) else {
        if manager.fileExists(atPath: target.path) { try fileSystem.removeFile(target) }
        continue
      }
      // rename(2) between two links of one file does nothing and would leave the temporary link behind.
      if Self.isSameFile(source, target) { continue }
      let temporary = url.appendingPathComponent(".\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
      if try !fileSystem.link(source, to: temporary) {
        let data = try files?.first(where: { $0.name == name })?.data ?? Data(contentsOf: source)
        try fileSystem.writeNewFile(data, to: temporary)
      }
      try fileSystem.rename(temporary, to: target)
    }
    try fileSystem.syncDirectory(url)
  }

  /// Removes what an interrupted save or write left behind and re-publishes the newest save.
  private func recover() throws {
    let manager = FileManager.default
    let folder = url.appendingPathComponent(Self.checkpointsFolder)
    for name in (try? manager.contentsOfDirectory(atPath: folder.path)) ?? [] where name.hasPrefix(Self.partialPrefix) {
      try fileSystem.removeDirectory(folder.appendingPathComponent(name))
    }
    // Temporary files of AtomicFile and of publish: ".<name>.tmp-<pid>-<random>". The lock guarantees
    // that no other process is writing them now.
    for name in (try? manager.contentsOfDirectory(atPath: url.path)) ?? []
    where name.hasPrefix(".") && name.contains(".tmp-") || name.hasPrefix(Self.probePrefix) {
      try fileSystem.removeFile(url.appendingPathComponent(name))
    }
    let saves = Self.committedSaves(in: url)
    guard let newest = saves.last else { return }
    if !isPublished(newest) { try publish(newest, files: nil) }
    for old in saves.dropLast() { try fileSystem.removeDirectory(old.url) }
    if saves.count > 1 { try fileSystem.syncDirectory(folder) }
  }

  /// Whether every top-level pair file is the same file (hard link) as `save`'s, or absent when it is.
  private func isPublished(_ save: Save) -> Bool {
    Self.pairFiles.allSatisfy { name in
      let source = save.url.appendingPathComponent(name), target = url.appendingPathComponent(name)
      let inSave = FileManager.default.fileExists(atPath: source.path)
      let atTop = FileManager.default.fileExists(atPath: target.path)
      return inSave == atTop && (!inSave || Self.isSameFile(source, target))
    }
  }

  /// Whether both paths exist and are links to one file (same device and inode).
  static func isSameFile(_ a: URL, _ b: URL) -> Bool {
    var first = stat(), second = stat()
    guard stat(a.path, &first) == 0, stat(b.path, &second) == 0 else { return false }
    return first.st_ino == second.st_ino && first.st_dev == second.st_dev
  }
}
