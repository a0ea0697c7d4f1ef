import Foundation
import ZIPFoundation

/// Why a NumPy `.npz` archive could not be read; every case names the archive (and the member, where one is at fault).
///
/// Problems inside a member's `.npy` data are reported as ``NumPyError`` with the path `archive.npz:member.npy`.
public enum NumPyArchiveError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// The file is missing, not a regular file, or cannot be opened.
  case unreadable(path: String, reason: String)
  /// The file is not a readable zip archive (no end-of-central-directory record: truncated or not a zip).
  case notZip(path: String, reason: String)
  /// The archive has more members than ``NumPyArchive/maximumMemberCount``.
  case tooManyMembers(path: String, limit: Int)
  /// A member that is not a regular file named `*.npy` (numpy.savez writes nothing else).
  case unexpectedMember(path: String, member: String)
  /// Two members with the same name.
  case duplicateMember(path: String, member: String)
  /// Inflating stopped because the archive's data would exceed `limit` bytes in total.
  case tooLarge(path: String, member: String, limit: Int)
  /// A member's data is damaged (bad deflate stream, CRC-32 or size mismatch).
  case corruptMember(path: String, member: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let path, let reason): return "\(path): cannot read the .npz archive: \(reason)"
    case .notZip(let path, let reason): return "\(path): not a valid .npz (zip) archive: \(reason)"
    case .tooManyMembers(let path, let limit):
      return "\(path): the .npz archive has more than \(limit) members"
    case .unexpectedMember(let path, let member):
      return "\(path): member '\(member)' is not a .npy file (an .npz holds only <name>.npy arrays)"
    case .duplicateMember(let path, let member): return "\(path): member '\(member)' appears more than once"
    case .tooLarge(let path, let member, let limit):
      return "\(path): the arrays decompress to more than the \(limit) bytes allowed (stopped in member '\(member)')"
    case .corruptMember(let path, let member, let reason): return "\(path): member '\(member)' is corrupt: \(reason)"
    }
  }

  public var errorDescription: String? { description }
}

/// Reader of NumPy `.npz` archives (`numpy.savez` / `numpy.savez_compressed`): a zip of `.npy` members.
public enum NumPyArchive {
  /// The most members an archive may list (numpy archives of datasets hold a handful).
  public static let maximumMemberCount = 4096

  /// Reads every `.npy` member of an `.npz` (zip, stored or deflated), keyed by member name without `.npy`
  /// (as `numpy.load` does).
  ///
  /// Bounded throughout: at most ``maximumMemberCount`` members; the total of the members' *inflated*
  /// bytes is at most `maximumBytes`, enforced while inflating (the sizes the zip declares are not trusted,
  /// so a zip bomb stops after at most `maximumBytes` bytes plus one read chunk); each member's CRC-32 and
  /// declared size are checked; and each member is then parsed by the strict ``NumPyArray/parse(_:path:)``.
  ///
  /// - Throws: ``NumPyArchiveError`` for the archive, ``NumPyError`` (path `archive:member`) for a member's contents.
  public static func read(contentsOf url: URL, maximumBytes: Int) throws -> [String: NumPyArray] {
    let path = url.path
    let fileSize: Int
    do {
      fileSize = try BoundedFile.regularFileSize(path)
    } catch let error as BoundedFileError {
      throw NumPyArchiveError.unreadable(path: path, reason: error.reason)
    }
    let declaredMembers = try declaredMemberCount(url, fileSize: fileSize)
    if let declaredMembers, declaredMembers > maximumMemberCount {
      throw NumPyArchiveError.tooManyMembers(path: path, limit: maximumMemberCount)
    }
    let archive: Archive
    do {
      archive = try Archive(url: url, accessMode: .read)
    } catch {
      throw NumPyArchiveError.notZip(path: path, reason: "\(error)")
    }

    var arrays: [String: NumPyArray] = [:]
    var memberCount = 0
    var totalBytes = 0
    for entry in archive {
      memberCount += 1
      guard memberCount <= maximumMemberCount else {
        throw NumPyArchiveError.tooManyMembers(path: path, limit: maximumMemberCount)
      }
      let member = entry.path
      guard entry.type == .file, member.hasSuffix(".npy"), member.count > 4 else {
        throw NumPyArchiveError.unexpectedMember(path: path, member: member)
      }
      let name = String(member.dropLast(4))
      guard arrays[name] == nil else { throw NumPyArchiveError.duplicateMember(path: path, member: member) }

      let remaining = maximumBytes - totalBytes
      var contents = Data()
      // The declared size only sizes the first allocation, capped by what may still be produced.
      contents.reserveCapacity(Int(clamping: min(entry.uncompressedSize, UInt64(max(remaining, 0)))))
      let checksum: CRC32
      do {
        checksum = try archive.extract(entry, bufferSize: 1 << 16) { chunk in
          guard contents.count + chunk.count <= remaining else {
            throw NumPyArchiveError.tooLarge(path: path, member: member, limit: maximumBytes)
          }
          contents.append(chunk)
        }
      } catch let error as NumPyArchiveError {
        throw error
      } catch {
        throw NumPyArchiveError.corruptMember(path: path, member: member, reason: "\(error)")
      }
      guard checksum == entry.checksum else {
        throw NumPyArchiveError.corruptMember(
          path: path, member: member, reason: "CRC-32 mismatch (stored \(entry.checksum), computed \(checksum))")
      }
      guard UInt64(contents.count) == entry.uncompressedSize else {
        throw NumPyArchiveError.corruptMember(
          path: path, member: member,
          reason: "\(contents.count) bytes inflated, the archive declares \(entry.uncompressedSize)")
      }
      totalBytes += contents.count
      arrays[name] = try NumPyArray.parse(contents, path: "\(path):\(member)")
    }
    // ZIPFoundation's iterator stops quietly at an unreadable central-directory record; a short count
    // would otherwise pass as a smaller archive.
    if let declaredMembers, declaredMembers != memberCount {
      throw NumPyArchiveError.notZip(
        path: path, reason: "the central directory lists \(declaredMembers) members, \(memberCount) are readable")
    }
    return arrays
  }

  /// The member count in the end-of-central-directory record (the last one in the file's final 64 KiB + 22
  /// bytes), or nil when there is none or it defers to a ZIP64 record (count `0xFFFF`).
  static func declaredMemberCount(_ url: URL, fileSize: Int) throws -> Int? {
    let recordSize = 22
    let tailLength = min(fileSize, recordSize + 0xFFFF)
    let tail: [UInt8]
    do {
      let handle = try FileHandle(forReadingFrom: url)
      defer { try? handle.close() }
      try handle.seek(toOffset: UInt64(fileSize - tailLength))
      tail = [UInt8](try handle.read(upToCount: tailLength) ?? Data())
    } catch {
      throw NumPyArchiveError.unreadable(path: url.path, reason: "\(error)")
    }
    guard tail.count >= recordSize else { return nil }
    for start in stride(from: tail.count - recordSize, through: 0, by: -1)
    where tail[start] == 0x50 && tail[start + 1] == 0x4B && tail[start + 2] == 0x05 && tail[start + 3] == 0x06 {
      let count = Int(tail[start + 10]) | Int(tail[start + 11]) << 8
      return count == 0xFFFF ? nil : count
    }
    return nil
  }
}
