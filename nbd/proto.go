package nbd

import "github.com/pojntfx/go-nbd/pkg/protocol"

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md),
// in two groups: those go-nbd's protocol package (v0.3.2) names, taken from
// it, and those it lacks, named here with their values from doc/proto.md.
// go-nbd v0.3.2 implements only what its own server and kernel client use:
// no NO_ZEROES, EXPORT_NAME, STARTTLS, structured replies, meta contexts,
// FLUSH/TRIM/CACHE/WRITE_ZEROES/BLOCK_STATUS, the READ_ONLY/SEND_* flags,
// and no option errors but UNSUP and UNKNOWN.

// Taken from go-nbd v0.3.2's protocol package.
const (
	// Handshake.
	magicNBDMAGIC              = protocol.NEGOTIATION_MAGIC_OLDSTYLE // "NBDMAGIC", first word of every handshake
	magicIHAVEOPT              = protocol.NEGOTIATION_MAGIC_OPTION   // "IHAVEOPT", newstyle magic and option magic
	magicOptReply              = protocol.NEGOTIATION_MAGIC_REPLY    // option reply magic
	handshakeFlagFixedNewstyle = protocol.NEGOTIATION_HANDSHAKE_FLAG_FIXED_NEWSTYLE

	// Option types.
	optAbort = protocol.NEGOTIATION_ID_OPTION_ABORT
	optList  = protocol.NEGOTIATION_ID_OPTION_LIST
	optInfo  = protocol.NEGOTIATION_ID_OPTION_INFO
	optGo    = protocol.NEGOTIATION_ID_OPTION_GO

	// Option reply types.
	repAck        = protocol.NEGOTIATION_TYPE_REPLY_ACK
	repServer     = protocol.NEGOTIATION_TYPE_REPLY_SERVER
	repInfo       = protocol.NEGOTIATION_TYPE_REPLY_INFO
	repErrUnsup   = protocol.NEGOTIATION_TYPE_REPLY_ERR_UNSUPPORTED
	repErrUnknown = protocol.NEGOTIATION_TYPE_REPLY_ERR_UNKNOWN

	// NBD_INFO types carried in NBD_REP_INFO replies.
	infoExport      = protocol.NEGOTIATION_TYPE_INFO_EXPORT
	infoName        = protocol.NEGOTIATION_TYPE_INFO_NAME
	infoDescription = protocol.NEGOTIATION_TYPE_INFO_DESCRIPTION
	infoBlockSize   = protocol.NEGOTIATION_TYPE_INFO_BLOCKSIZE

	// Transmission flags.
	tflagHasFlags     = protocol.NEGOTIATION_REPLY_FLAGS_HAS_FLAGS
	tflagCanMultiConn = protocol.NEGOTIATION_REPLY_FLAGS_CAN_MULTI_CONN

	// Transmission magics and commands.
	magicRequest     = protocol.TRANSMISSION_MAGIC_REQUEST
	magicSimpleReply = protocol.TRANSMISSION_MAGIC_REPLY
	cmdRead          = protocol.TRANSMISSION_TYPE_REQUEST_READ
	cmdWrite         = protocol.TRANSMISSION_TYPE_REQUEST_WRITE
	cmdDisc          = protocol.TRANSMISSION_TYPE_REQUEST_DISC

	// Error values carried in replies.
	errPerm  = protocol.TRANSMISSION_ERROR_EPERM
	errInval = protocol.TRANSMISSION_ERROR_EINVAL
)

// Missing from go-nbd v0.3.2: named here.
const (
	// Handshake flags (server) and client flags.
	handshakeFlagNoZeroes   = uint16(1 << 1)
	serverHandshakeFlags    = handshakeFlagFixedNewstyle | handshakeFlagNoZeroes
	clientFlagFixedNewstyle = uint32(1 << 0)
	clientFlagNoZeroes      = uint32(1 << 1)
	clientFlagsKnown        = clientFlagFixedNewstyle | clientFlagNoZeroes

	// Option types.
	optExportName      = uint32(1)
	optStartTLS        = uint32(5)
	optStructuredReply = uint32(8)
	optListMetaContext = uint32(9)
	optSetMetaContext  = uint32(10)

	// Option reply types. Errors have bit 31 set.
	repMetaContext = uint32(4)
	repErrBit      = uint32(1 << 31)
	repErrPolicy   = repErrBit | 2
	repErrInvalid  = repErrBit | 3
	repErrTLSReqd  = repErrBit | 5
	repErrTooBig   = repErrBit | 9

	// Transmission flags.
	tflagReadOnly  = uint16(1 << 1)
	tflagSendFlush = uint16(1 << 2)
	tflagSendDF    = uint16(1 << 7)
	tflagSendCache = uint16(1 << 10)

	// Structured replies, commands and command flags.
	magicStructuredReply = uint32(0x668e33ef)
	cmdFlush             = uint16(3)
	cmdTrim              = uint16(4)
	cmdCache             = uint16(5)
	cmdWriteZeroes       = uint16(6)
	cmdBlockStatus       = uint16(7)
	cmdFlagDF            = uint16(1 << 2)
	cmdFlagReqOne        = uint16(1 << 3)

	// Structured reply flags and chunk types.
	replyFlagDone        = uint16(1 << 0)
	replyTypeNone        = uint16(0)
	replyTypeOffsetData  = uint16(1)
	replyTypeOffsetHole  = uint16(2)
	replyTypeBlockStatus = uint16(5)
	replyTypeError       = uint16(1<<15 | 1)

	// Error values carried in replies.
	errIO = uint32(5)

	// base:allocation status flags.
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
