/** The chat protocol's public surface; see protocols/README.md for the wire contract. */
export { ChatServer } from './chat-server.js'
export type { ChatServerCounters, ChatServerEvent, ChatServerOptions, ChatServerStats } from './chat-server.js'
export { requestChat } from './chat-client.js'
export type { RequestChatOptions } from './chat-client.js'
export { CHAT_PROTOCOL } from './ids.js'
export { decodeChatRequest, validateChatRequest, validateModelName, validateOptions } from './validate.js'
export { SlotQueue } from './slot-queue.js'
