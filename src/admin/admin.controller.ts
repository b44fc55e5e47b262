import { BadRequestException, Controller, Get, Param, UseGuards } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { isValidId } from '../protocol/ids';
import { ApiKeyGuard } from '../http/api-key.guard';
import { UserView } from './user-view.dto';
import { UserViewService } from './user-view.service';

/**
 * ADMIN_API_KEYS: `Authorization: Bearer <key>`. Without keys the admin routes do
 * not exist (the 404 Nest gives any unknown route); a missing or wrong key is 401.
 */
const AdminGuard = ApiKeyGuard({ name: 'ADMIN_API_KEYS (adminApiKeys)', keys: (options) => options.adminApiKeys, minKeyLength: 16, challenge: true });

@ApiTags('admin')
@ApiBearerAuth()
@Controller('v1/users')
@UseGuards(AdminGuard)
export class AdminController {
  constructor(private readonly users: UserViewService) {}

  @Get(':id')
  @ApiOperation({ summary: "A user's presence and queue, read from Redis (Authorization: Bearer <one of ADMIN_API_KEYS>)" })
  @ApiParam({ name: 'id', description: 'User id, ^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$' })
  @ApiOkResponse({ type: UserView })
  @ApiBadRequestResponse({ description: 'Invalid id' })
  @ApiUnauthorizedResponse({ description: 'No valid key' })
  @ApiNotFoundResponse({ description: 'ADMIN_API_KEYS is unset: the route is off' })
  view(@Param('id') id: string): Promise<UserView> {
    if (!isValidId(id)) throw new BadRequestException('Invalid id');
    return this.users.view(id);
  }
}
