import { BadRequestException, Controller, Get, Param, UseGuards } from '@nestjs/common';
import { ApiBadRequestResponse, ApiBearerAuth, ApiNotFoundResponse, ApiOkResponse, ApiOperation, ApiParam, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { isValidId } from '../protocol/ids';
import { AdminGuard } from './admin.guard';
import { UserView } from './user-view.dto';
import { UserViewService } from './user-view.service';

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
