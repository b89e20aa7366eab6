package nbd

import "github.com/pojntfx/go-nbd/pkg/protocol"

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// go-nbd's protocol package names some of them; the rest are named here.

// Handshake magics and flags.
const (
	magicNBDMAGIC = protocol.NEGOTIATION_MAGIC_OLDSTYLE // "NBDMAGIC", first word of every handshake
	magicIHAVEOPT = protocol.NEGOTIATION_MAGIC_OPTION   // "IHAVEOPT", newstyle magic and option magic
	magicOptReply = protocol.NEGOTIATION_MAGIC_REPLY    // option reply magic

	handshakeFlagFixedNewstyle = protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE
	handshakeFlagNoZeroes      = uint16(1 << 1)
	serverHandshakeFlags       = handshakeFlagFixedNewstyle | handshakeFlagNoZeroes

	clientFlagFixedNewstyle = uint32(1 << 0)
	clientFlagNoZeroes      = uint32(1 << 1)
	clientFlagsKnown        = clientFlagFixedNewstyle | clientFlagNoZeroes
)

// Option types.
const (
	optExportName      = uint32(1)
	optAbort           = protocol.NEGOTIATION_ID_OPTION_ABORT
	optList            = protocol.NEGOTIATION_ID_OPTION_LIST
	optStartTLS        = uint32(5)
	optInfo            = protocol.NEGOTIATION_ID_OPTION_INFO
	optGo              = protocol.NEGOTIATION_ID_OPTION_GO
	optStructuredReply = uint32(8)
	optListMetaContext = uint32(9)
	optSetMetaContext  = uint32(10)
)

// Option reply types. Errors have bit 31 set.
const (
	repAck         = protocol.NEGOTIATION_TYPE_REPLY_ACK
	repServer      = protocol.NEGOTIATION_TYPE_REPLY_SERVER
	repInfo        = protocol.NEGOTIATION_TYPE_REPLY_INFO
	repMetaContext = uint32(4)

	repErrBit     = uint32(1 << 31)
	repErrUnsup   = protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED
	repErrInvalid = repErrBit | 3
	repErrUnknown = protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN
	repErrTooBig  = repErrBit | 9
)

// NBD_INFO types carried in NBD_REP_INFO replies.
const (
	infoExport      = protocol.NEGOTIATION_TYPE_INFO_EXPORT
	infoName        = protocol.NEGOTIATION_TYPE_INFO_NAME
	infoDescription = protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION
	infoBlockSize   = protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE
)

// Transmission flags.
const (
	tflagHasFlags     = protocol.NEGOTIATION_REPLY_FLAGS_HAS_FLAGS
	tflagReadOnly     = uint16(1 << 1)
	tflagSendFlush    = uint16(1 << 2)
	tflagSendDF       = uint16(1 << 7)
	tflagCanMultiConn = protocol.NEGOTIATION_REPLY_FLAGS_CAN_MULTI_CONN
	tflagSendCache    = uint16(1 << 10)
)

// Transmission magics, commands, command flags.
const (
	magicRequest         = protocol.TRANSMISSION_MAGIC_REQUEST
	magicSimpleReply     = protocol.TRANSMISSION_MAGIC_REPLY
	magicStructuredReply = uint32(0x668e33ef)

	cmdRead        = protocol.TRANSMISSION_TYPE_REQUEST_READ
	cmdWrite       = protocol.TRANSMISSION_TYPE_REQUEST_WRITE
	cmdDisc        = protocol.TRANSMISSION_TYPE_REQUEST_DISC
	cmdFlush       = uint16(3)
	cmdTrim        = uint16(4)
	cmdCache       = uint16(5)
	cmdWriteZeroes = uint16(6)
	cmdBlockStatus = uint16(7)

	cmdFlagDF     = uint16(1 << 2)
	cmdFlagReqOne = uint16(1 << 3)
)

// Structured reply flags and chunk types.
const (
	replyFlagDone = uint16(1 << 0)

	replyTypeNone        = uint16(0)
	replyTypeOffsetData  = uint16(1)
	replyTypeOffsetHole  = uint16(2)
	replyTypeBlockStatus = uint16(5)
	replyTypeError       = uint16(1<<15 | 1)
)

// Error values carried in replies.
const (
	errPerm  = protocol.TRANSMISSION_ERROR_EPERM
	errIO    = uint32(5)
	errInval = protocol.TRANSMISSION_ERROR_EINVAL
)

// base:allocation status flags.
const (
	stateHole = uint32(1 << 0)
	stateZero = uint32(1 << 1)
)

// Message sizes in bytes.
const (
	handshakeLen          = 8 + 8 + 2     // NBDMAGIC, IHAVEOPT, handshake flags
	clientFlagsLen        = 4             // client flags
	optHeaderLen          = 8 + 4 + 4     // magic, option, length
	optReplyHeaderLen     = 8 + 4 + 4 + 4 // magic, option, reply type, length
	exportNameReplyLen    = 8 + 2         // size, transmission flags
	exportNameZeroes      = 124           // reserved zeroes after EXPORT_NAME unless NO_ZEROES
	infoExportLen         = 2 + 8 + 2     // type, size, flags
	infoBlockSizeLen      = 2 + 4 + 4 + 4 // type, minimum, preferred, maximum
	requestHeaderLen      = 4 + 2 + 2 + 8 + 8 + 4
	simpleReplyHeaderLen  = 4 + 4 + 8
	chunkHeaderLen        = 4 + 2 + 2 + 8 + 4 // magic, flags, type, cookie, length
	offsetLen             = 8                 // offset field of OFFSET_DATA/OFFSET_HOLE
	holePayloadLen        = 8 + 4             // offset, hole size
	errorPayloadLen       = 4 + 2             // error, message length (message follows)
	blockDescriptorLen    = 4 + 4             // extent length, status flags
	metaContextIDLen      = 4
	maxReplyHeaderRoom    = chunkHeaderLen + offsetLen // room reserved before read data
	maxStringLen          = 4096                       // spec limit for names and messages
	metaContextBaseAlloc  = "base:allocation"
	metaContextBaseAll    = "base:" // wildcard for LIST_META_CONTEXT
	allocationContextID   = uint32(1)
	listMetaContextIDZero = uint32(0) // LIST_META_CONTEXT replies carry a reserved 0 id
)

// Size constraints advertised in NBD_INFO_BLOCK_SIZE: the spec's defaults
// (any byte alignment, 4 KiB preferred, 32 MiB payloads), so clients that
// never ask still get what they expect.
const (
	minBlockSize       = 1
	preferredBlockSize = 4096
	maxPayload         = 32 << 20
)
